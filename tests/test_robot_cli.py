"""Steps 3 and 4 end to end through ``penspin.cli.main``: export-replay, replay, finetune and
eval on the proxy-real hand, on tiny settings, plus the clear errors of the robot commands."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from penspin.cli import main
from penspin.evaluation.robot_eval import summarise
from penspin.replay import dataset
from penspin.replay.trajectories import Trajectories
from penspin.rl.checkpoint import load_checkpoint
from penspin.student.policy import load_policy
from penspin.task.kinematics import FingertipFK

ROOT = Path(__file__).resolve().parents[1]
ORACLE = str(ROOT / "checkpoints" / "oracle.pt")
STUDENT = str(ROOT / "checkpoints" / "student-bc.pt")
STEPS = 40


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    main(["export-replay", "--oracle", ORACLE, "--out", str(out / "traj.npz"),
          "--pickle-dir", str(out / "pkl"), "pens=marker", "per_pen=1", f"steps={STEPS}",
          "candidates=4", "max_tries=2", "min_rotation=0"])
    return out


@pytest.fixture(scope="module")
def replayed(exported, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    main(["replay", "--trajectories", str(exported / "traj.npz"), "--out-dir", str(out),
          "replay.pens=marker", "replay.video_fps=0", "replay.min_rotation=0"])
    return out


@pytest.fixture(scope="module")
def finetuned(replayed, tmp_path_factory) -> Path:
    """Finetune on the replay's file plus two hand-made demos (so one can be held out)."""
    data = tmp_path_factory.mktemp("real")
    shutil.copy(replayed / dataset.FILE_NAME, data / dataset.FILE_NAME)
    base = dataset.load_demos(data)[0]
    rng = np.random.default_rng(0)
    fk = FingertipFK()
    for _ in range(2):
        target = base.target + rng.normal(0, 0.01, (1, 16)).astype(np.float32)
        qpos = np.concatenate([target[:1], target[:-1]])
        tips = fk(torch.from_numpy(qpos)).detach().numpy()
        dataset.append_demo(data / dataset.FILE_NAME, qpos, target, tips)
    run = tmp_path_factory.mktemp("finetune")
    main(["finetune", "--real-dataset-folder", str(data), "--checkpoint-path", STUDENT,
          "--run-dir", str(run), "--num-epochs", "1", "train.progress=false"])
    return run


def test_export_replay_writes_trajectories_and_pickles(exported):
    traj = Trajectories.load(exported / "traj.npz")
    assert len(traj) == 1
    assert traj.targets.shape == (1, STEPS, 16)
    assert traj.start_q.shape == traj.start_target.shape == (1, 16)
    assert traj.pen_pos.shape == (1, 3) and traj.pen_quat.shape == (1, 4)
    assert traj.pen_name.tolist() == ["marker"]
    assert np.all(traj.sim_rotation > 0.0)
    assert traj.meta["export"]["steps"] == STEPS and traj.meta["oracle"] == ORACLE
    assert traj.meta["action_scale"] == pytest.approx(1 / 24)
    # Open-loop targets move at most one action per step from the start target on.
    steps = np.diff(np.concatenate([traj.start_target[:, None], traj.targets], 1), axis=1)
    assert np.abs(steps).max() <= 1 / 24 + 1e-6
    pickles = sorted((exported / "pkl").glob("*.pkl"))
    assert [p.name for p in pickles] == ["replay_000_marker.pkl"]
    with pickles[0].open("rb") as f:
        data = pickle.load(f)
    assert set(data) == {"position"} and data["position"].shape == (STEPS, 16)
    np.testing.assert_array_equal(data["position"], traj.targets[0])


def test_replay_keeps_successes_in_real_data(exported, replayed):
    log = json.loads((replayed / "replay_log.json").read_text())
    assert log["robot"] == "proxy" and log["trials"] == 1 and len(log["records"]) == 1
    assert log["control_hz"] == pytest.approx(18.0)
    assert log["robot_shift"]["severity"] == 1.0 and log["robot_shift"]["pens"] == ["marker"]
    assert log["config"]["replay"]["min_rotation"] == 0.0
    assert not (replayed / "videos").exists()  # video_fps=0
    rec = log["records"][0]
    assert rec["pen"] == "marker" and rec["trajectory"] == 0
    # 40 steps of an oracle trajectory that turned the pen in simulation keep it in the hand.
    assert rec["success"] and not rec["dropped"], rec
    assert rec["kept_steps"] == STEPS and rec["rotation_rad"] > 0
    assert rec["held_s"] == pytest.approx(STEPS / 18)
    assert log["success_rate"] == 1.0 and log["demos_in_file"] == 1
    demos = dataset.load_demos(replayed)
    assert [d.name for d in demos] == [rec["demo"]] == ["replay_demon_0"]
    traj = Trajectories.load(exported / "traj.npz")
    demo = demos[0]
    assert demo.length == rec["kept_steps"]
    # Open loop: what was sent is the trajectory (the guard had nothing to cut).
    np.testing.assert_allclose(demo.target, traj.targets[0], atol=1e-6)
    np.testing.assert_allclose(demo.action, demo.target - demo.qpos, atol=1e-6)
    assert np.abs(demo.qpos[0] - traj.start_q[0]).max() < 0.2  # read from the hand, not copied
    assert not np.array_equal(demo.qpos, demo.target)
    # The proxy has touch sensors: their binary readings are kept with the demo, and a hand
    # holding a pen touches it.
    touch = demo.extras[dataset.TOUCH_KEY]
    assert touch.shape == (STEPS, 32) and set(np.unique(touch)) <= {0.0, 1.0}
    assert touch.sum(1).min() >= 1


VIDEO_SCRIPT = """
import json, sys
import penspin.sim.gl  # noqa: F401  (before mujoco)
from penspin.robot.camera import SceneCamera
from penspin.sim import scene
try:
    SceneCamera(scene.load_model(), width=8, height=8).close()
except Exception as exc:
    print(json.dumps({"skip": f"no offscreen GL: {exc}"}))
    raise SystemExit
from penspin.cli import main
from penspin.evaluation.robot_eval import summarise
main(sys.argv[1:])
print(json.dumps({"ok": True}))
"""


def test_replay_with_check_videos(exported, tmp_path):
    """Rendering needs a GL backend chosen before mujoco loads: a fresh interpreter."""
    out = tmp_path / "replay"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "-c", VIDEO_SCRIPT, "replay", "--trajectories",
         str(exported / "traj.npz"), "--out-dir", str(out), "replay.pens=marker",
         "replay.video_fps=1", "replay.min_rotation=0", "replay.repeats=2"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    log = json.loads((out / "replay_log.json").read_text())
    assert log["trials"] == 2
    names = [f"trial_{r['trial']:04d}_marker_{'ok' if r['success'] else 'fail'}.mp4"
             for r in log["records"]]
    videos = sorted(p.name for p in (out / "videos").glob("*.mp4"))
    assert videos == sorted(names)
    import imageio.v2 as imageio

    with imageio.get_reader(out / "videos" / names[0]) as reader:
        frames = [f for f in reader]
    assert len(frames) == math.ceil(STEPS / 18)  # one frame a second of an 18 Hz loop
    assert frames[0].shape == (72, 96, 3) and frames[0].std() > 1.0  # a real image
    succeeded = [r for r in log["records"] if r["success"]]
    assert log["demos_in_file"] == len(succeeded)
    if succeeded:
        demos = dataset.load_demos(out)
        assert [d.length for d in demos] == [r["kept_steps"] for r in succeeded]
        assert [d.name for d in demos] == [r["demo"] for r in succeeded]


def test_finetune_command_writes_checkpoints(finetuned, capsys):
    best = load_checkpoint(finetuned / "best.pt", expected_kind="student")
    assert best["counters"]["epoch"] in (0, 1)  # the start competes for best.pt
    info = best["finetune"]
    assert info["source"] == STUDENT and info["demos"] == 3
    # Three demos of 40 steps, one held out for validation. The replayed one stores its start
    # target: 40 windows (one ending at every step from 0, padded as the controller pads); the
    # two hand-made ones do not: 39 each (from step 1).
    assert info["train_windows"] + info["val_windows"] == 40 + 2 * 39
    assert info["val_windows"] in (39, 40)
    history = load_checkpoint(finetuned / "last.pt")["finetune"]["history"]
    assert len(history["train"]) == 1 and len(history["val"]) == 2
    assert all(math.isfinite(v) for v in history["train"] + history["val"])
    assert list((finetuned / "tb").iterdir()), "no TensorBoard events"
    assert load_policy(finetuned / "best.pt").kind == "student"


def test_eval_on_proxy_compares_replay_and_a_student(exported, replayed, finetuned, tmp_path):
    out = tmp_path / "eval.json"
    best = str(finetuned / "best.pt")
    main(["eval", "--robot", "proxy", "--trajectories", str(exported / "traj.npz"),
          "--checkpoint", "replay", best, "--out", str(out), f"steps={STEPS}"])
    data = json.loads(out.read_text())
    assert data["robot"] == "proxy" and data["config"]["steps"] == STEPS
    rows = data["results"]
    assert [r["policy"] for r in rows] == ["replay", best]
    for r in rows:
        for key in ("rotation_rad", "reach_180", "reach_360"):
            assert key in r and "mean" in r[key] and len(r[key]["ci95"]) == 2
        assert r["trials"] == 1
        assert r["horizon_s"] == pytest.approx(STEPS / 18)
        assert set(r["per_pen"]) == {"marker"} and r["seen"]["trials"] == 1
        assert "unseen" not in r
        rot = r["rotation_rad"]["mean"]
        assert r["reach_180"]["mean"] == float(rot >= math.pi)
        assert r["reach_360"]["mean"] == float(rot >= 2 * math.pi)
        assert 0.0 < r["time_held_s"]["mean"] <= STEPS / 18 + 1e-9
    # Same trial, same seed: the open-loop row replays exactly what `penspin replay` measured.
    logged = json.loads((replayed / "replay_log.json").read_text())["records"][0]
    assert rows[0]["rotation_rad"]["mean"] == pytest.approx(logged["rotation_rad"], abs=1e-9)
    assert rows[0]["survival"]["mean"] == float(not logged["dropped"])


def test_robot_metrics_per_trial_per_pen_and_seen_unseen():
    rotation = np.array([0.5, 3.5, 7.0, 2 * math.pi, math.pi])
    held = np.array([1.0, 2.0, 3.0, 3.0, 0.5])
    dropped = np.array([True, True, False, False, True])
    pens = np.array(["marker", "marker", "pencil", "brush", "brush"])
    raw = {"rotation": rotation, "held": held, "dropped": dropped}
    out = summarise(raw, pens, horizon_s=3.0)
    assert out["trials"] == 5 and out["horizon_s"] == 3.0
    assert out["rotation_rad"]["mean"] == pytest.approx(rotation.mean())
    assert out["reach_180"]["mean"] == pytest.approx(4 / 5)  # pi itself counts
    assert out["reach_360"]["mean"] == pytest.approx(2 / 5)
    assert out["survival"]["mean"] == pytest.approx(2 / 5)
    assert out["time_held_s"]["mean"] == pytest.approx(held.mean())
    assert out["per_pen"]["marker"]["trials"] == 2
    assert out["per_pen"]["marker"]["reach_180"]["mean"] == pytest.approx(0.5)
    assert out["per_pen"]["brush"]["reach_360"]["mean"] == pytest.approx(0.5)
    assert out["seen"]["trials"] == 3 and out["unseen"]["trials"] == 2  # brush is unseen
    assert out["seen"]["survival"]["mean"] == pytest.approx(1 / 3)
    lo, hi = out["reach_180"]["ci95"]
    assert 0 < lo < 0.8 < hi < 1


def test_eval_robot_without_trajectories_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--robot", "proxy", "--checkpoint", "replay"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--trajectories" in err and "export-replay" in err


def test_eval_on_ros2_refuses_automatic_judging(exported, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--robot", "ros2", "--trajectories", str(exported / "traj.npz"),
              "--checkpoint", "replay"])
    assert exc.value.code == 2
    assert "proxy" in capsys.readouterr().err


def test_replay_on_ros2_without_rclpy_says_so(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rclpy", None)  # import rclpy -> ImportError
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--robot", "ros2", "--trajectories", str(exported / "traj.npz"),
              "--out-dir", str(tmp_path / "real"), "replay.pens=marker", "replay.video_fps=0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "rclpy" in err and "--robot proxy" in err
    assert not (tmp_path / "real" / dataset.FILE_NAME).exists()


def test_export_replay_refuses_a_student(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export-replay", "--oracle", STUDENT, "--out", str(tmp_path / "t.npz")])
    assert exc.value.code == 2
    assert "student" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()


def test_a_second_replay_into_the_same_folder_appends(exported, replayed, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(replayed, out)
    main(["replay", "--trajectories", str(exported / "traj.npz"), "--out-dir", str(out),
          "replay.pens=marker", "replay.video_fps=0", "replay.min_rotation=0",
          "replay.repeats=2", "robot.proxy.seed=7"])
    first = json.loads((out / "replay_log.json").read_text())
    second = json.loads((out / "replay_log_1.json").read_text())
    assert [r["trial"] for r in first["records"]] == [0]
    assert [r["trial"] for r in second["records"]] == [1, 2]  # numbered on, no name clashes
    kept = sum(r["success"] for r in first["records"] + second["records"])
    assert second["demos_in_file"] == kept == len(dataset.load_demos(out))


def test_replay_with_camera_writes_the_full_file(exported, tmp_path):
    out = tmp_path / "full"
    try:
        main(["replay", "--trajectories", str(exported / "traj.npz"), "--out-dir", str(out),
              "replay.pens=marker", "replay.video_fps=0", "replay.min_rotation=0",
              "replay.steps=12", "replay.camera=true"])
    except Exception as exc:  # no offscreen GL on this machine
        if "OpenGL" in str(exc) or "gl" in type(exc).__name__.lower():
            pytest.skip(f"no offscreen GL: {exc}")
        raise
    full = dataset.load_demos(out / dataset.FULL_FILE_NAME)
    assert len(full) == 1 and full[0].length == 12
    extras = full[0].extras
    assert extras["rgb_ori"].shape == (12, 72, 96, 3) and extras["depth"].shape == (12, 72, 96)
    assert extras["pc"].shape == (12, 512, 3)
    # The camera saw the pen: its ends lie within a pen length of the palm, not at zero.
    ends = extras["obj_ends"]
    assert ends.shape == (12, 2, 3) and np.all(np.linalg.norm(ends, axis=-1) > 0.03)
    assert np.all(np.linalg.norm(ends[:, 0] - ends[:, 1], axis=-1) > 0.08)
    assert extras["touch"].shape == (12, 32)


def test_replay_with_camera_but_no_colour_keeps_depth_ends_and_touch(exported, tmp_path):
    out = tmp_path / "nocolour"
    main(["replay", "--trajectories", str(exported / "traj.npz"), "--out-dir", str(out),
          "replay.pens=marker", "replay.video_fps=0", "replay.min_rotation=0",
          "replay.steps=12", "replay.camera=true", "replay.rgb=false"])
    extras = dataset.load_demos(out / dataset.FULL_FILE_NAME)[0].extras
    assert set(extras) == {"depth", "pc", "obj_ends", "touch"}
    assert extras["depth"].shape == (12, 72, 96) and extras["obj_ends"].shape == (12, 2, 3)
    assert np.all(np.linalg.norm(extras["obj_ends"], axis=-1) > 0.03)
