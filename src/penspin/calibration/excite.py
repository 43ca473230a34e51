"""``penspin excite``: drive a hand with the pen absent through chirps and steps on every joint.

Successful replays exercise the hand only where spinning takes it, with the pen's contacts
mixed in; an excitation sweeps each joint over a band of frequencies and amplitudes with nothing
in the hand, which separates gains, damping, friction and latency far better (docs/real.md).
The log is a replay data file (``excite_data.h5``, the same layout), whose first
``hold_seconds`` hold the start target, so every trial's command before step 0 is known.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from penspin.calibration.hand_model import PEN_AWAY
from penspin.config import ConfigError
from penspin.replay import dataset
from penspin.robot.controllers import OpenLoop
from penspin.robot.factory import RobotConfig, open_robot
from penspin.robot.interface import StartState
from penspin.robot.safety import SafetyLimits
from penspin.robot.trial import run_trial
from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER, NUM_JOINTS
from penspin.task import grasps
from penspin.task.kinematics import FingertipFK

FILE_NAME = "excite_data.h5"


@dataclass(frozen=True)
class ExciteSettings:
    trials: int = 16  # excitation trials (one start pose each)
    seconds: float = 4.0  # s per trial, the hold included
    hold_seconds: float = 1.0  # s holding the start target before the excitation
    amplitude: float = 0.1  # rad, chirp amplitude per joint
    # rad, largest random step of the piecewise-constant part: large enough that the driver's
    # torque limit is reached, the one place the absolute gains show (robot.limits.max_step
    # must allow it; the default here does, with the pen absent)
    step_size: float = 0.35
    step_seconds: float = 0.5  # s between random steps
    min_hz: float = 0.2  # chirp start frequency (Hz)
    max_hz: float = 2.5  # chirp end frequency (Hz)
    seed: int = 0  # random start poses and chirp phases
    batch: int = 16  # trials side by side on the proxy (1 on a real hand)

    def check(self) -> None:
        if self.trials < 1 or self.batch < 1 or self.seconds <= self.hold_seconds:
            raise ConfigError("excite needs trials, batch >= 1 and seconds > hold_seconds")


@dataclass(frozen=True)
class ExciteConfig:
    excite: ExciteSettings = field(default_factory=ExciteSettings)
    robot: RobotConfig = field(default_factory=lambda: RobotConfig(
        limits=SafetyLimits(max_step=0.4)))


def excitation(centre: np.ndarray, steps: int, hold: int, hz: float, cfg: ExciteSettings,
               max_step: float, rng: np.random.Generator) -> np.ndarray:
    """Targets [n, steps, 16]: ``hold`` steps at ``centre``, then per joint a linear chirp with a
    random phase plus random steps, inside the joint limits and within ``max_step`` per step."""
    n = len(centre)
    t = np.arange(steps - hold)[None, :, None] / hz
    duration = max(t.max(), 1e-6)
    phase0 = rng.uniform(0, 2 * np.pi, (n, 1, NUM_JOINTS))
    sweep = 2 * np.pi * (cfg.min_hz * t + (cfg.max_hz - cfg.min_hz) * t**2 / (2 * duration))
    chirp = cfg.amplitude * (np.sin(sweep + phase0) - np.sin(phase0))
    every = max(1, round(cfg.step_seconds * hz))
    levels = rng.uniform(-cfg.step_size, cfg.step_size, (n, -(-(steps - hold) // every),
                                                          NUM_JOINTS))
    moves = np.repeat(levels, every, 1)[:, : steps - hold]
    moves[:, :every] = 0.0  # the excitation starts from the start target
    path = np.concatenate([np.zeros((n, hold, NUM_JOINTS)), chirp + moves], 1)
    out = np.empty_like(path)
    prev = centre
    lower, upper = np.asarray(JOINT_LOWER), np.asarray(JOINT_UPPER)
    for k in range(steps):
        goal = np.clip(centre + path[:, k], lower, upper)
        prev = prev + np.clip(goal - prev, -0.9 * max_step, 0.9 * max_step)
        out[:, k] = prev
    return out


def excite(kind: str, cfg: ExciteConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Run the trials and append each to ``out_dir/excite_data.h5``; returns the log."""
    es = cfg.excite
    es.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(es.seed)
    cache = grasps.load_cache()
    fk = FingertipFK()
    batch = es.batch if kind == "proxy" else 1
    written = []
    bar = tqdm(total=es.trials, desc=f"excite on {kind}", unit="trial", disable=not progress)
    for b, first in enumerate(range(0, es.trials, batch)):
        n = min(batch, es.trials - first)
        centre = cache["target"][rng.integers(len(cache["target"]), size=n)].astype(np.float64)
        with open_robot(kind, cfg.robot, ["marker"] * n, seed_offset=b) as robot:
            hz = robot.control_hz
            steps, hold = round(es.seconds * hz), round(es.hold_seconds * hz)
            targets = excitation(centre, steps, hold, hz, es, cfg.robot.limits.max_step, rng)
            start = StartState(centre, centre, np.tile(PEN_AWAY, (n, 1)),
                               np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)))
            log = run_trial(robot, OpenLoop(targets), start, steps, _NoJudge())
        for h in range(n):
            qpos = log.qpos[h, : log.steps]
            tips = fk(torch.from_numpy(qpos)).numpy()
            written.append(dataset.append_demo(out / FILE_NAME, qpos,
                                               log.target[h, : log.steps], tips))
        bar.update(n)
    bar.close()
    summary = {"robot": kind, "trials": es.trials, "control_hz": hz, "file": str(out / FILE_NAME),
               "groups": written, "config": dataclasses.asdict(cfg),
               "robot_shift": robot.describe() if hasattr(robot, "describe") else {}}
    (out / "excite_log.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _NoJudge:
    """Excitation has no success to judge."""

    def update(self) -> None:
        return None


def main(args) -> None:
    from penspin.cli_support import resolve

    cfg = resolve(ExciteConfig(), args)
    if cfg is None:
        return
    torch.set_num_threads(1)
    summary = excite(args.robot, cfg, args.out_dir)
    print(f"{summary['trials']} excitation trials at {summary['control_hz']:.1f} Hz in "
          f"{summary['file']}")
