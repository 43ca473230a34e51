"""scripts/long_run.py: a run stitched across the runs it was resumed through; collapse check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[1]


def _run(path: Path, points: dict[int, float]) -> Path:
    with SummaryWriter(str(path / "tb")) as writer:
        for step, value in points.items():
            for tag in ("episode/reward", "episode/length", "episode/rotation_speed"):
                writer.add_scalar(tag, value, step)
    return path


def test_segments_stitch_at_their_resume_steps_and_the_longest_dip_is_found(tmp_path):
    m = 1_000_000
    # the first run collapsed after 3 M; the second resumed from its 2 M save and dipped once
    first = _run(tmp_path / "a", {0: 10.0, m: 50.0, 2 * m: 100.0, 3 * m: 10.0, 4 * m: 5.0})
    second = _run(tmp_path / "b", {3 * m: 95.0, 4 * m: 70.0, 5 * m: 75.0, 6 * m: 110.0})
    script = str(ROOT / "scripts" / "long_run.py")
    proc = subprocess.run([sys.executable, script, f"{first}:{2 * m}",
                           str(second), "--out", str(tmp_path / "l.png"),
                           "--csv", str(tmp_path / "l.csv")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "7 points to 6.00 M steps; segments end at 2.00 M, 6.00 M" in proc.stdout
    assert "best running-mean episode reward 110.0 at 6.00 M" in proc.stdout
    assert "below 80% of the best so far: 1.00 M steps (4.00-5.00 M)" in proc.stdout
    rows = (tmp_path / "l.csv").read_text().splitlines()
    assert rows[0].startswith("bin_start_steps") and len(rows) == 8
