"""Headless video and the viewer's no-display exit.

Rendering runs in a fresh interpreter: MuJoCo binds its GL backend at first import, and in this
pytest process other test modules have imported mujoco before the render module could choose one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import imageio.v2 as imageio
import pytest

RENDER_SCRIPT = """
import json, sys
from penspin.viz.render import render_video
from penspin.task.config import TaskConfig
result = render_video(TaskConfig(seed=1), None, sys.argv[1], seconds=1.0, camera="front",
                      width=161, height=120)
print(json.dumps(result))
"""


def _headless_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.setdefault("TQDM_DISABLE", "1")
    return env


def _frames(path) -> tuple[int, tuple]:
    with imageio.get_reader(path, format="FFMPEG") as reader:
        first = reader.get_data(0)
        return reader.count_frames(), first.shape


def test_render_video_writes_one_frame_per_control_step(tmp_path):
    out = tmp_path / "clip.mp4"
    proc = subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(out)], capture_output=True,
                          text=True, env=_headless_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.stat().st_size > 0
    assert not list(tmp_path.glob(".*tmp*")), "temporary video left behind"
    count, shape = _frames(out)
    assert result["frames"] == result["steps"] == 20 == count  # 1 s at 20 Hz
    assert shape == (120, 160, 3)  # odd width rounded down to even for yuv420p
    for key in ("rotation_rad", "rotation_turns", "rotation_speed", "time_held_s"):
        assert math.isfinite(result[key]), key
    assert result["rotation_turns"] == pytest.approx(result["rotation_rad"] / (2 * math.pi))
    assert 0 < result["time_held_s"] <= 1.0 + 1e-9
    assert result["drops"] >= 0


def test_render_cli_prints_the_numbers(tmp_path):
    out = tmp_path / "cli.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "penspin.cli", "render", "--out", str(out), "--seconds", "0.5",
         "--width", "96", "--height", "64", "--camera", "top", "seed=3", "obs.tactile=false"],
        capture_output=True, text=True, env=_headless_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("rotation about +z", "turns", "mean rotation speed", "time held", "drops:"):
        assert text in proc.stdout
    assert _frames(out)[0] == 10


def test_render_rejects_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "penspin.cli", "render", "--checkpoint", str(tmp_path / "no.pt")],
        capture_output=True, text=True, env=_headless_env(), timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_viewer_without_display_exits_with_a_pointer_to_render(monkeypatch):
    from penspin.viz import viewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    args = argparse.Namespace(checkpoint="", overrides=[], keys=False)
    with pytest.raises(SystemExit) as exc:
        viewer.main(args)
    assert str(exc.value) == (
        "penspin view needs a display; use `penspin render` on headless machines")
