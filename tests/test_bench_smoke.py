"""The benchmarks run end to end on tiny settings and print their tables."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_sim.py"


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


def _table_rows(script: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines()
            if line.startswith("| ") and "---" not in line][1:]


def test_distillation_and_training_benchmarks_print_one_row_per_variant(tmp_path):
    rows = _table_rows("bench_distill.py", "--iterations", "1", "--run-dir", str(tmp_path / "d"),
                       "--variants", "conv, 1 epoch", "transformer, 2 epochs",
                       "--set", "env.num_envs=4", "env.num_threads=1", "train.horizon=4")
    assert [r.split("|")[1].strip() for r in rows] == ["conv, 1 epoch", "transformer, 2 epochs"]
    assert all(float(r.split("|")[2]) > 0 for r in rows)
    rows = _table_rows("bench_train.py", "--iterations", "1", "--envs", "4",
                       "--run-dir", str(tmp_path / "t"), "--variants", "defaults", "5 epochs",
                       "--set", "env.num_threads=1", "train.ppo.horizon_length=4")
    assert [r.split("|")[2].strip() for r in rows] == ["defaults", "5 epochs"]


def test_replay_benchmark_times_the_loop_with_and_without_colour():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_replay.py"),
                           "--steps", "31", "--hands", "2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("work per step: median") == 2 and out.count("camera frame, ") == 3
    assert "camera RGB-D" in out and "depth only (no colour)" in out
    assert "no camera:" in out and "pen ends from the camera:" in out


def test_point_encoder_benchmark_prints_one_row_per_thread_count():
    rows = _table_rows("bench_point_encoder.py", "--batch", "8", "--points", "5",
                       "--repeats", "2", "--threads", "1", "2")
    assert [r.split("|")[1].strip() for r in rows] == ["1", "2"]
    assert all(r.rstrip(" |").endswith("x") for r in rows)


def test_gpu_benchmark_runs_on_warps_cpu_device(tmp_path):
    pytest.importorskip("mujoco_warp")
    out = tmp_path / "gpu.json"
    rows = _table_rows("bench_gpu.py", "--device", "cpu", "--envs", "2", "--steps", "2",
                       "--repeats", "1", "--modes", "graph", "eager", "--json", str(out))
    assert [r.split("|")[1:3] for r in rows] == [[" 2 ", " no "], [" 2 ", " no "]]
    saved = json.loads(out.read_text())
    assert all(r["task_steps_per_s"] > 0 and r["physics_control_steps_per_s"] > 0 for r in saved)
