"""The simulation benchmark runs end to end in quick mode and prints its table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sim.py"


def test_quick_benchmark_prints_a_markdown_table():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--envs", "1", "4"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "| configuration | envs | physics threads | physics steps/s |" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert sum("raw physics" in r for r in rows) == 2
    assert [r.split("|")[2].strip() for r in rows if "PenSpin task" in r] == ["1", "4"]
    assert "2-thread scaling" in out
    if importlib.util.find_spec("gymnasium_robotics") is None:
        assert "peer unavailable" in out
    else:
        assert any("HandManipulatePen" in r for r in rows) or "peer unavailable" in out
