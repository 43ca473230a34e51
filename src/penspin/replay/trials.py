"""Trials of one policy, or of open-loop replay, on a robot: the same trials for every source.

Trial i starts from trajectory i's start state with its pen, and the proxy's seed fixes each
trial's driver gains, reading offsets and pen placement, so runs differ only by what drives the
hand. ``penspin eval --robot`` reports them; ``penspin finetune`` picks checkpoints by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from penspin.config import ConfigError
from penspin.replay.trajectories import Trajectories
from penspin.robot.camera import EndsTracker
from penspin.robot.controllers import OpenLoop, PolicyController
from penspin.robot.factory import RobotConfig, open_robot
from penspin.robot.trial import PoseJudge, run_trial

REPLAY = "replay"  # the pseudo-checkpoint that plays the trajectories open loop


@dataclass(frozen=True)
class RobotEvalConfig:
    robot: RobotConfig = field(default_factory=RobotConfig)
    repeats: int = 1  # each trajectory's start is tried this many times
    batch: int = 64  # proxy hands stepped side by side
    steps: int = 0  # control steps per trial (0: the trajectories' length)


def _controller(source, robot, part: Trajectories, steps: int, tracker_cfg):
    if source == REPLAY:
        return OpenLoop(part.targets[:, :steps])
    if source.kind == "oracle":
        obs = source.task.obs
        if not hasattr(robot, "privileged"):
            raise ConfigError("an oracle needs the simulator's state: only the proxy has it")
        return PolicyController(source.act, source.task.action_scale, obs.history_len,
                                privileged_fn=lambda r: r.privileged(obs.tactile, obs.num_points))
    model = source.model
    ends_fn = EndsTracker(tracker_cfg, robot.num_hands) if model.use_ends else None
    return PolicyController(source.act, source.task.action_scale,
                            history_len=model.input_shapes["proprio_hist"][0],
                            use_touch=model.use_tactile, use_ends=model.use_ends,
                            ends_fn=ends_fn)


def run_on_robot(source, traj: Trajectories, kind: str, cfg: RobotEvalConfig,
                 progress: bool = True) -> dict:
    """Trials of one policy (or ``REPLAY``); per-trial arrays."""
    if kind != "proxy" and not (kind == "ros2" and cfg.robot.ros2.pen_pose_topic):
        raise ConfigError("automatic evaluation needs the pen's pose: the proxy's, or over ROS 2 "
                          "a tracker's (robot.ros2.pen_pose_topic=...); without one use "
                          "`penspin replay --robot ros2` and judge trials by eye")
    ids = np.tile(np.arange(len(traj)), cfg.repeats)
    steps = traj.targets.shape[1] if cfg.steps <= 0 else min(cfg.steps, traj.targets.shape[1])
    raw = {k: [] for k in ("rotation", "held", "dropped")}
    label = "replay" if source == REPLAY else Path(source.path).name
    bar = tqdm(total=len(ids), desc=f"{label} on {kind}", unit="trial", disable=not progress)
    batch = cfg.batch if kind == "proxy" else 1  # one real hand
    for b, start in enumerate(range(0, len(ids), batch)):
        part = traj.subset(ids[start:start + batch])
        with open_robot(kind, cfg.robot, part.pen_name.tolist(), seed_offset=b) as robot:
            judge = PoseJudge(robot)
            run_trial(robot, _controller(source, robot, part, steps, cfg.robot.ends),
                      part.start_state(), steps, judge, stop_when_dropped=True)
        # A batch may stop early once every pen is down; held time counts to the full trial.
        held = np.where(judge.dropped, judge.held_seconds(), steps * robot.dt)
        raw["rotation"].append(judge.rotation)
        raw["held"].append(held)
        raw["dropped"].append(judge.dropped)
        bar.update(len(part))
    bar.close()
    result = {k: np.concatenate(v) for k, v in raw.items()}
    result["pens"] = traj.pen_name[ids]
    result["horizon_s"] = steps * robot.dt
    return result
