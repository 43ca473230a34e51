"""``HandRobot``: what steps 3 and 4 need from a hand, whoever drives it.

Every backend reads 16 joint angles and takes 16 absolute joint targets (radians, penspin joint
order index-thumb-middle-ring), optionally gives binary touch and an RGB-D frame, and keeps a
control rate. Arrays carry a leading batch axis of ``num_hands``: a real hand has one, the
proxy-real world runs many trials side by side so that evaluations are batched. Targets pass
through :class:`~penspin.robot.safety.SafetyGuard` before any backend sees them, and every
reading is checked, so no backend can skip the limits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from penspin.robot.safety import SafetyGuard, SafetyLimits


@dataclass
class CameraFrame:
    """One RGB-D frame per hand: ``rgb`` [n, H, W, 3] uint8 (None when not asked for),
    ``depth`` [n, H, W] metres, ``mask`` [n, H, W] bool (the pen's pixels), the camera
    intrinsics and its pose in the world."""

    rgb: np.ndarray | None
    depth: np.ndarray
    mask: np.ndarray
    fovy_deg: float
    cam_pos: np.ndarray  # [3]
    cam_rot: np.ndarray  # [3, 3], columns: camera x, y, z (z points away from the scene)


@dataclass
class StartState:
    """Where a trial starts: hand angles and targets, and the pen pose (world, wxyz quaternion)."""

    q: np.ndarray  # [n, 16]
    target: np.ndarray  # [n, 16]
    pen_pos: np.ndarray  # [n, 3]
    pen_quat: np.ndarray  # [n, 4]


class HandRobot(ABC):
    """Base of every backend. Subclasses implement the ``_``-prefixed hooks; the public methods
    add the safety checks. Use as a context manager so the hand is stopped on any error."""

    num_hands: int = 1
    control_hz: float = 20.0
    has_touch: bool = False
    has_camera: bool = False

    def __init__(self, limits: SafetyLimits | None = None):
        self.guard = SafetyGuard(limits or SafetyLimits(), self.num_hands)

    # Public API --------------------------------------------------------------------------------
    def start(self, start: StartState | None = None) -> np.ndarray:
        """Bring the hands (and pens) to ``start`` and return the first joint reading.

        Simulated backends place the pen themselves; real ones ask the person to place it."""
        q = self._start(start)
        self.guard.reset(q if start is None else start.target)
        return self.guard.check_reading(q, self._reading_time())

    def read(self) -> np.ndarray:
        """Joint angles [n, 16] (rad, penspin order), checked for range, finiteness and age."""
        return self.guard.check_reading(self._read(), self._reading_time())

    def command(self, targets: np.ndarray) -> np.ndarray:
        """Send absolute joint targets [n, 16]; returns what was sent after the safety filter."""
        safe = self.guard.filter_target(targets)
        self._command(safe)
        return safe

    def tick(self) -> None:
        """Wait for the next control step (real hands sleep, simulated ones step physics)."""
        self._tick()

    def touch(self) -> np.ndarray | None:
        """Binary taxels [n, 32], or None where the hand has none."""
        return None

    def camera(self, rgb: bool = True) -> CameraFrame | None:
        """An RGB-D frame with the pen's mask, or None where there is no camera. ``rgb=False``
        lets a camera skip colour (the pen-ends pipeline uses depth and mask only)."""
        return None

    def stop(self) -> None:
        """Hold the current position and release resources."""
        self._stop()

    def __enter__(self) -> HandRobot:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # Backend hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _start(self, start: StartState | None) -> np.ndarray: ...

    @abstractmethod
    def _read(self) -> np.ndarray: ...

    @abstractmethod
    def _command(self, targets: np.ndarray) -> None: ...

    @abstractmethod
    def _tick(self) -> None: ...

    def _reading_time(self) -> float | None:
        """Monotonic time (s) the newest reading was taken; None where readings cannot go stale."""
        return None

    def _stop(self) -> None:
        return None
