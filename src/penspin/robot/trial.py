"""One loop for every trial on a robot: start, then read -> decide -> command -> tick.

Replays (open loop) and closed-loop evaluations share it, so both log the same things: every
reading and command, the loop period, optional camera frames, a check video, and the judge's
verdict. The proxy judges from the pen's true pose; a real hand asks the person.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from penspin.robot.interface import HandRobot, StartState
from penspin.task.config import TerminationConfig


class PoseJudge:
    """Proxy verdicts from the pen's pose: dropped (the task's fall rules) and rotation about +z,
    accumulated until the drop.

    A trial succeeds when the pen turned more than ``min_rotation`` before any drop; what is
    kept of it ends ``drop_margin`` seconds before the drop (the whole trial if none), as the
    original kept a hand-picked frame window of each real replay."""

    def __init__(self, robot, min_rotation: float = 2 * math.pi, drop_margin: float = 1.0,
                 rules: TerminationConfig | None = None):
        self.robot = robot
        self.min_rotation = min_rotation
        self.margin_steps = round(drop_margin * robot.control_hz)
        self.rules = rules or TerminationConfig()
        n = robot.num_hands
        self.rotation = np.zeros(n)
        self.increments: list[np.ndarray] = []
        self.dropped = np.zeros(n, dtype=bool)
        self.fall_step = np.full(n, -1)
        self.steps = 0

    def update(self) -> None:
        r, rb = self.rules, self.robot
        z = rb.pen_ends()[..., 2]
        fell = ((rb.pen_pos()[:, 2] < r.min_pen_height) | (z.min(1) < r.min_end_height)
                | (z.max(1) > r.max_end_height) | rb.diverged)
        live = ~self.dropped
        inc = np.where(live & ~fell, rb.pen_angvel[:, 2] * rb.dt, 0.0)
        self.increments.append(inc)
        self.rotation += inc
        new = fell & live
        self.fall_step[new] = self.steps
        self.dropped |= fell
        self.steps += 1

    def kept_window(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps [start, end) kept per hand: all, or up to ``drop_margin`` before the drop."""
        end = np.where(self.dropped, np.maximum(self.fall_step - self.margin_steps, 0),
                       self.steps)
        return np.zeros_like(end), end

    def kept_rotation(self) -> np.ndarray:
        cum = np.concatenate([np.zeros((1, self.robot.num_hands)),
                              np.cumsum(self.increments, 0)]) if self.increments else None
        if cum is None:
            return np.zeros(self.robot.num_hands)
        return cum[self.kept_window()[1], np.arange(self.robot.num_hands)]

    def success(self) -> np.ndarray:
        return self.kept_rotation() > self.min_rotation

    def held_seconds(self) -> np.ndarray:
        steps = np.where(self.dropped, self.fall_step, self.steps)
        return steps * self.robot.dt


class AskJudge:
    """A real hand: the person says whether the trial succeeded and, optionally, which frames to
    keep (the original picked a window of each real replay by hand)."""

    def __init__(self, robot, input_fn=input):
        self.robot = robot
        self.input_fn = input_fn
        self.steps = 0
        self.window = (0, 0)
        self.verdict = np.zeros(robot.num_hands, dtype=bool)

    def update(self) -> None:
        self.steps += 1

    def decide(self) -> None:
        answer = self.input_fn("did the pen spin without dropping? [y/N] ").strip().lower()
        self.verdict[:] = answer in ("y", "yes")
        self.window = (0, self.steps)
        if self.verdict.any():
            text = self.input_fn(f"frames to keep as 'start:end' (empty: all {self.steps}) ")
            if text.strip():
                a, b = (int(v) for v in text.split(":"))
                if not 0 <= a < b <= self.steps:
                    raise ValueError(f"frame window {text!r} is not inside 0:{self.steps}")
                self.window = (a, b)

    def kept_window(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.robot.num_hands
        return np.full(n, self.window[0]), np.full(n, self.window[1])

    def success(self) -> np.ndarray:
        return self.verdict


@dataclass
class TrialLog:
    """Per hand and step: readings, commands, and the extra sensors (touch, camera) recorded."""

    qpos: np.ndarray  # [n, T, 16]
    target: np.ndarray  # [n, T, 16]
    steps: int = 0
    sensors: dict[str, list] = field(default_factory=dict)
    periods: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)


def loop_timing(periods: list[float], compute: list[float]) -> dict:
    """Median and p99 of the loop period and of the work inside it (s)."""
    out = {}
    for name, values in (("period", periods), ("compute", compute)):
        v = np.asarray(values)
        out[name] = {"median": float(np.median(v)) if len(v) else math.nan,
                     "p99": float(np.quantile(v, 0.99)) if len(v) else math.nan}
    return out


def run_trial(robot: HandRobot, controller, start: StartState | None, steps: int, judge,
              record_fn=None, frame_fn=None, stop_when_dropped: bool = False) -> TrialLog:
    """Run ``steps`` control steps on every hand at once.

    ``record_fn(robot) -> dict`` records sensors each step (touch; rgb, depth, pc, obj_ends);
    ``frame_fn(robot, t)`` may grab check-video frames. Safety errors propagate (the caller's
    ``with robot:`` stops the hand)."""
    q = robot.start(start)
    n = robot.num_hands
    target = start.target.copy() if start is not None else q.copy()
    log = TrialLog(np.zeros((n, steps, 16), np.float32), np.zeros((n, steps, 16), np.float32))
    controller.start(q, target, robot)
    last = time.perf_counter()
    for t in range(steps):
        begin = time.perf_counter()
        if t:
            q = robot.read()
        target = robot.command(controller(t, q, target, robot))
        log.qpos[:, t], log.target[:, t] = q, target
        if record_fn is not None:
            for key, value in record_fn(robot).items():
                log.sensors.setdefault(key, []).append(value)
        if frame_fn is not None:
            frame_fn(robot, t)
        log.compute.append(time.perf_counter() - begin)
        robot.tick()
        judge.update()
        now = time.perf_counter()
        log.periods.append(now - last)
        last = now
        log.steps = t + 1
        if stop_when_dropped and getattr(judge, "dropped", np.zeros(n, bool)).all():
            break
    return log
