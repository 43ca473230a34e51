"""Joint limits and sanity checks that sit between every policy and every hand.

A target is clamped to the joint limits and may move at most ``max_step`` from the last one sent,
so one bad policy output cannot fling a finger. A reading that is non-finite, far outside the
limits or old means the hand or its driver is not where we think it is, so the run aborts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from penspin.config import ConfigError, UserFacingError
from penspin.sim.allegro import JOINT_LOWER, JOINT_NAMES, JOINT_UPPER, NUM_JOINTS


class SafetyError(UserFacingError, RuntimeError):
    """A target or reading that must not reach, or come from, a hand; the run stops."""


@dataclass(frozen=True)
class SafetyLimits:
    """Bounds in radians (penspin joint order) and seconds."""

    lower: tuple[float, ...] = tuple(JOINT_LOWER.tolist())  # rad per joint: targets clamped
    upper: tuple[float, ...] = tuple(JOINT_UPPER.tolist())  # rad per joint: targets clamped
    # rad: the most a target may move per command; the policy itself moves at most 1/24 rad a step.
    max_step: float = 0.15
    # rad: how far outside the limits a reading may be (tracking error, calibration) before an
    # abort.
    reading_margin: float = 0.2
    # s: a reading older than this means the state stream stalled.
    stale_after: float = 0.5

    def check(self) -> None:
        if len(self.lower) != NUM_JOINTS or len(self.upper) != NUM_JOINTS:
            raise ConfigError(
                f"safety lower and upper need {NUM_JOINTS} entries each, got "
                f"{len(self.lower)} and {len(self.upper)}"
            )
        for j, (lo, hi) in enumerate(zip(self.lower, self.upper, strict=True)):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(
                    f"safety limits for {JOINT_NAMES[j]} must be finite with lower < upper,"
                    f" got [{lo}, {hi}]"
                )
        if not (math.isfinite(self.max_step) and self.max_step > 0):
            raise ConfigError(f"safety max_step must be a positive number, got {self.max_step}")
        if not (math.isfinite(self.reading_margin) and self.reading_margin >= 0):
            raise ConfigError(f"safety reading_margin must be >= 0, got {self.reading_margin}")
        if not (math.isfinite(self.stale_after) and self.stale_after > 0):
            raise ConfigError(f"safety stale_after must be > 0 seconds, got {self.stale_after}")


class SafetyGuard:
    """Filters targets and checks readings for ``num_hands`` hands (arrays [num_hands, 16])."""

    def __init__(self, limits: SafetyLimits, num_hands: int):
        limits.check()
        if num_hands < 1:
            raise ConfigError(f"num_hands must be >= 1, got {num_hands}")
        self.limits = limits
        self.num_hands = num_hands
        self._lower = np.array(limits.lower, dtype=np.float64)
        self._upper = np.array(limits.upper, dtype=np.float64)
        self._last: np.ndarray | None = None

    def reset(self, last_target: np.ndarray) -> None:
        """Set the target the next one is bounded against (clamped, so the bound stays inside
        the limits)."""
        self._last = np.clip(self._validated(last_target, "reset target"), self._lower, self._upper)

    def filter_target(self, targets: np.ndarray) -> np.ndarray:
        """Clamp to the limits, then to +-max_step around the last target; returns what to send."""
        safe = np.clip(self._validated(targets, "target"), self._lower, self._upper)
        if self._last is not None:
            step = self.limits.max_step
            safe = np.clip(safe, self._last - step, self._last + step)
        self._last = safe
        return safe.copy()

    def check_reading(self, q: np.ndarray, stamp: float | None) -> np.ndarray:
        """Return ``q`` as float64, or raise if it is non-finite, out of range or stale."""
        q = self._validated(q, "joint reading")
        margin = self.limits.reading_margin
        lo, hi = self._lower - margin, self._upper + margin
        bad = np.argwhere((q < lo) | (q > hi))
        if len(bad):
            h, j = bad[0]
            raise SafetyError(
                f"joint reading out of range, stopping: hand {h} {JOINT_NAMES[j]} = {q[h, j]:.3f}"
                f" rad, allowed [{lo[j]:.3f}, {hi[j]:.3f}] (limits +- {margin} rad)"
            )
        if stamp is not None:
            age = time.monotonic() - stamp
            if age > self.limits.stale_after:
                raise SafetyError(
                    f"joint reading is {age:.2f} s old (limit {self.limits.stale_after} s),"
                    " stopping: the hand's state stream has stalled"
                )
        return q

    def _validated(self, x: np.ndarray, what: str) -> np.ndarray:
        """A float64 copy of ``x`` with shape [num_hands, 16] and only finite entries; clamping
        alone would pass NaN straight through."""
        x = np.array(x, dtype=np.float64)
        if x.shape != (self.num_hands, NUM_JOINTS):
            raise SafetyError(
                f"{what} must have shape ({self.num_hands}, {NUM_JOINTS}), got {x.shape}"
            )
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            h, j = bad[0]
            raise SafetyError(
                f"{what} is not finite, stopping: hand {h} {JOINT_NAMES[j]} = {x[h, j]}"
                f" ({len(bad)} non-finite entries in all)"
            )
        return x
