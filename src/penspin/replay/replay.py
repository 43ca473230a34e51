"""``penspin replay``: play oracle trajectories open loop on a robot and keep the successes.

Each trial starts from its trajectory's start state (the proxy places the pen with a person's
error; a real hand asks the person to place it), plays the absolute targets at the robot's
control rate, and is judged (proxy: from the pen pose; real hand: the person says). Successes are
appended to ``real_data.h5`` in the original's layout, plus ``touch`` where the hand has touch
sensors (with cameras, ``real_data_full.h5`` too), one atomic append each, so a replay killed
at any moment leaves every earlier demo readable.
A check video per trial and ``replay_log.json`` (verdicts, rotation, loop timing) sit beside;
a later replay into the same folder writes ``replay_log_1.json``, ... and numbers its trials on.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from penspin.config import ConfigError, UserFacingError
from penspin.replay import dataset
from penspin.replay.trajectories import Trajectories
from penspin.robot.camera import EndsTracker
from penspin.robot.controllers import OpenLoop
from penspin.robot.factory import RobotConfig, open_robot
from penspin.robot.proxy import pens_named
from penspin.robot.trial import AskJudge, PoseJudge, loop_timing, run_trial
from penspin.task.kinematics import FingertipFK


@dataclass(frozen=True)
class ReplaySettings:
    pens: str = "collect"  # trajectories of these pens are replayed ('all', 'collect', names)
    repeats: int = 1  # each trajectory is tried this many times (new placement each time)
    batch: int = 64  # proxy hands stepped side by side
    max_demos: int = 0  # stop appending after this many successes (0: keep all)
    steps: int = 0  # play only the first steps of each trajectory (0: all)
    min_rotation: float = 2 * math.pi  # rad about +z a success must reach before any drop
    drop_margin: float = 1.0  # s cut before a drop from what is kept
    video_fps: float = 2.0  # check video frame rate (0: none); the original's was 1
    camera: bool = False  # record RGB-D, point cloud and pen ends into real_data_full.h5
    rgb: bool = True  # with camera: colour frames too (software GL makes them the slow part)


@dataclass(frozen=True)
class ReplayConfig:
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    robot: RobotConfig = field(default_factory=RobotConfig)


class CheckVideos:
    """Frames of every hand at ``fps``; one MP4 per trial, named by its verdict."""

    def __init__(self, robot, fps: float, camera=None):
        self.every = max(1, round(robot.control_hz / fps))
        self.fps = fps
        self.camera = camera
        self.frames: list[np.ndarray] = []

    def __call__(self, robot, t: int) -> None:
        if t % self.every == 0:
            frame = self.camera.frame if self.camera is not None else None
            if frame is None or frame.rgb is None:
                frame = robot.camera()
            self.frames.append(frame.rgb.copy())

    def write(self, folder: Path, names: list[str]) -> None:
        import imageio.v2 as imageio

        folder.mkdir(parents=True, exist_ok=True)
        stack = np.stack(self.frames, 1)  # [n, F, H, W, 3]
        for frames, name in zip(stack, names, strict=True):
            imageio.mimwrite(folder / f"{name}.mp4", list(frames), fps=self.fps, macro_block_size=1)


def _recorder(robot, tracker: EndsTracker | None):
    """Per-step sensors kept with a demo: touch where the hand has it (students that read touch
    are finetuned on it), camera data where one is recorded; None when there is neither."""
    if not robot.has_touch and tracker is None:
        return None

    def record(robot) -> dict:
        out = {dataset.TOUCH_KEY: robot.touch()} if robot.has_touch else {}
        if tracker is not None:
            ends = tracker(robot)
            frame = tracker.frame
            if frame.rgb is not None:
                out.update(rgb_ori=frame.rgb, rgb_c2d=frame.rgb)
            out.update(depth=frame.depth.astype(np.float32), pc=tracker.points.astype(np.float32),
                       obj_ends=ends.reshape(-1, 2, 3).astype(np.float32))
        return out
    return record


def replay(traj: Trajectories, kind: str, cfg: ReplayConfig, out_dir: str | Path,
           progress: bool = True) -> dict:
    """Replay every selected trajectory ``repeats`` times; returns the log written to JSON."""
    rs = cfg.replay
    if rs.repeats < 1 or rs.batch < 1:
        raise ConfigError("replay.repeats and replay.batch must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in pens_named(rs.pens)}
    ids = np.flatnonzero(np.isin(traj.pen_name, sorted(wanted)))
    if not len(ids):
        raise ConfigError(f"{traj.meta.get('oracle', 'the file')}: no trajectory for pens "
                          f"{rs.pens!r}; it has {sorted(set(traj.pen_name.tolist()))}")
    trials = np.tile(ids, rs.repeats)
    steps = traj.targets.shape[1] if rs.steps <= 0 else min(rs.steps, traj.targets.shape[1])
    batch = rs.batch if kind == "proxy" else 1
    fk = FingertipFK()
    records, periods, compute = [], [], []
    kept = dataset.demo_count(out / dataset.FILE_NAME)
    logs = sorted(out.glob("replay_log*.json"))
    first_trial = sum(json.loads(p.read_text())["trials"] for p in logs)
    log_path = out / ("replay_log.json" if not logs else f"replay_log_{len(logs)}.json")
    bar = tqdm(total=len(trials), desc=f"replay on {kind}", unit="trial", disable=not progress)
    for b, start in enumerate(range(0, len(trials), batch)):
        sel = trials[start:start + batch]
        part = traj.subset(sel)
        with open_robot(kind, cfg.robot, part.pen_name.tolist(), seed_offset=b) as robot:
            judge = (PoseJudge(robot, rs.min_rotation, rs.drop_margin)
                     if kind == "proxy" or getattr(robot, "has_pen_pose", False)
                     else AskJudge(robot))
            if rs.camera and not robot.has_camera:
                raise ConfigError(f"replay.camera=true, but the {kind} robot has no camera")
            tracker = (EndsTracker(cfg.robot.ends, robot.num_hands, rgb=rs.rgb) if rs.camera
                       else None)
            videos = (CheckVideos(robot, rs.video_fps, tracker)
                      if rs.video_fps > 0 and robot.has_camera else None)
            log = run_trial(robot, OpenLoop(part.targets[:, :steps]), part.start_state(), steps,
                            judge, record_fn=_recorder(robot, tracker), frame_fn=videos)
        if isinstance(judge, AskJudge):
            try:
                judge.decide()
            except EOFError:
                raise UserFacingError(
                    f"standard input closed while asking whether trial {first_trial + start} "
                    "succeeded; the demos judged before it are in the file. Run interactively, "
                    "or judge from a pen pose topic (robot.ros2.pen_pose_topic)") from None
        ok = judge.success()
        first, end = judge.kept_window()
        held = judge.held_seconds() if isinstance(judge, PoseJudge) else None
        names = []
        for h, traj_id in enumerate(sel):
            trial = first_trial + start + h
            rec = {"trial": int(trial), "trajectory": int(traj_id), "pen": str(part.pen_name[h]),
                   "success": bool(ok[h]), "kept_steps": int(end[h] - first[h])}
            if isinstance(judge, PoseJudge):
                rec.update(rotation_rad=float(judge.rotation[h]), dropped=bool(judge.dropped[h]),
                           held_s=float(held[h]))
            if ok[h] and (rs.max_demos <= 0 or kept < rs.max_demos):
                rec["demo"] = _append(out, log, h, slice(first[h], end[h]), fk, rs.camera,
                                      int(traj_id), part.start_target[h])
                kept += 1
            records.append(rec)
            names.append(f"trial_{trial:04d}_{part.pen_name[h]}_{'ok' if ok[h] else 'fail'}")
        if videos is not None:
            videos.write(out / "videos", names)
        periods += log.periods
        compute += log.compute
        bar.update(len(sel))
        bar.set_postfix(kept=kept, success=f"{np.mean([r['success'] for r in records]):.2f}")
        if 0 < rs.max_demos <= kept:
            break  # the file holds max_demos demos: no more trials to run
    bar.close()
    summary = {
        "robot": kind, "trials": len(records),
        "success_rate": float(np.mean([r["success"] for r in records])),
        "demos_in_file": kept, "control_hz": robot.control_hz,
        "timing_s": loop_timing(periods, compute),
        "robot_shift": robot.describe() if hasattr(robot, "describe") else {},
        "config": dataclasses.asdict(cfg), "records": records,
    }
    log_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _append(out: Path, log, h: int, window: slice, fk: FingertipFK, camera: bool,
            trajectory: int, start_target: np.ndarray) -> str:
    """One demo into real_data.h5 (and real_data_full.h5 with the camera's data)."""
    qpos, target = log.qpos[h, window], log.target[h, window]
    # The target held before the demo's first step: the trial's start target, or the command
    # just before a window that a person started later.
    held = start_target if window.start == 0 else log.target[h, window.start - 1]
    ids = {"trajectory_id": trajectory, "start_target": held}
    tips = fk(torch.from_numpy(qpos)).numpy()
    extras = {k: np.stack([step[h] for step in v])[window] for k, v in log.sensors.items()}
    light = {k: v for k, v in extras.items() if k == dataset.TOUCH_KEY}
    name = dataset.append_demo(out / dataset.FILE_NAME, qpos, target, tips, light, **ids)
    if camera:
        dataset.append_demo(out / dataset.FULL_FILE_NAME, qpos, target, tips, extras, **ids)
    return name


def main(args) -> None:
    from penspin.cli_support import resolve

    cfg = resolve(ReplayConfig(), args)
    if cfg is None:
        return
    torch.set_num_threads(1)
    traj = Trajectories.load(args.trajectories)
    summary = replay(traj, args.robot, cfg, args.out_dir)
    t = summary["timing_s"]
    print(f"{summary['trials']} trials, success {summary['success_rate']:.2f}; "
          f"{summary['demos_in_file']} demos in {Path(args.out_dir) / dataset.FILE_NAME}; "
          f"loop period median {t['period']['median'] * 1e3:.1f} ms, "
          f"p99 {t['period']['p99'] * 1e3:.1f} ms (budget {1e3 / summary['control_hz']:.1f} ms)")
