"""``FakeRobot``: a hand with no physics, for tests and dry runs of the real-robot loop."""

from __future__ import annotations

import time

import numpy as np

from penspin.robot.interface import HandRobot, StartState
from penspin.robot.safety import SafetyLimits
from penspin.sim.allegro import REAL_INIT_QPOS


class FakeRobot(HandRobot):
    """Joints follow the commanded targets with a first-order lag on every ``tick()``; nothing
    sleeps. ``sent`` records every target after the safety filter. ``fail_after`` makes readings
    NaN after that many reads and ``stale`` makes them old, so abort paths can be tested."""

    def __init__(
        self,
        num_hands: int = 1,
        control_hz: float = 20.0,
        alpha: float = 0.5,
        fail_after: int | None = None,
        stale: bool = False,
        limits: SafetyLimits | None = None,
    ):
        self.num_hands = num_hands
        self.control_hz = control_hz
        super().__init__(limits)
        self.alpha = alpha
        self.fail_after = fail_after
        self.stale = stale
        self.sent: list[np.ndarray] = []
        self.reads = 0
        self.stopped = False
        self.q = np.tile(REAL_INIT_QPOS, (num_hands, 1))
        self.target = self.q.copy()

    def _start(self, start: StartState | None) -> np.ndarray:
        if start is None:
            self.q = np.tile(REAL_INIT_QPOS, (self.num_hands, 1))
            self.target = self.q.copy()
        else:
            self.q = np.array(start.q, dtype=np.float64)
            self.target = np.array(start.target, dtype=np.float64)
        return self.q.copy()

    def _read(self) -> np.ndarray:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            return np.full_like(self.q, np.nan)
        return self.q.copy()

    def _command(self, targets: np.ndarray) -> None:
        self.sent.append(targets.copy())
        self.target = targets.copy()

    def _tick(self) -> None:
        self.q += self.alpha * (self.target - self.q)

    def _reading_time(self) -> float:
        now = time.monotonic()
        return now - 2 * self.guard.limits.stale_after if self.stale else now

    def _stop(self) -> None:
        self.stopped = True
