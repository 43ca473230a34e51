"""What decides the next joint targets on a robot: a recorded sequence, or a student policy.

:class:`PolicyController` rebuilds, from the robot's readings alone, exactly the inputs the task
gives a student in simulation: the history of (measured q, target that produced it), the last
three entries as the 96-d observation, and in the baseline modes binary touch and camera pen ends.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from penspin.robot.interface import HandRobot
from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER


class OpenLoop:
    """Plays absolute targets [n, T, 16] one step at a time, whatever the hand does."""

    def __init__(self, targets: np.ndarray):
        self.targets = np.asarray(targets, dtype=np.float64)
        self.steps = self.targets.shape[1]

    def start(self, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> None:
        return None

    def __call__(self, t: int, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> np.ndarray:
        return self.targets[:, t]


class PolicyController:
    """Closed loop: ``target += action_scale * clamp(policy(inputs))``, clamped to the limits."""

    def __init__(self, act: Callable[[dict], torch.Tensor], action_scale: float,
                 history_len: int = 30, ends_len: int = 3, use_touch: bool = False,
                 use_ends: bool = False, ends_fn: Callable | None = None,
                 privileged_fn: Callable | None = None):
        """``ends_fn(robot)`` gives pen ends relative to the palm [n, 6] (a camera tracker);
        ``privileged_fn(robot)`` adds an oracle's inputs (a simulated hand's true state)."""
        self.act = act
        self.action_scale = action_scale
        self.history_len = history_len
        self.ends_len = ends_len
        self.use_touch = use_touch
        self.use_ends = use_ends
        self.ends_fn = ends_fn
        self.privileged_fn = privileged_fn
        self.lower = np.asarray(JOINT_LOWER)
        self.upper = np.asarray(JOINT_UPPER)

    def _entry(self, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> dict:
        entry = {"proprio": np.concatenate([q, target], 1)}
        if self.use_touch:
            entry["touch"] = robot.touch()
        if self.use_ends:
            entry["ends"] = self.ends_fn(robot)
        return entry

    def start(self, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> None:
        """Fill every history slot with the first reading, as the task does on reset."""
        e = self._entry(q, target, robot)
        self.proprio = np.repeat(e["proprio"][:, None], self.history_len, 1)
        if self.use_touch:
            self.touch = np.repeat(e["touch"][:, None], self.history_len, 1)
        if self.use_ends:
            self.ends = np.repeat(e["ends"][:, None], self.ends_len, 1)
        self._fresh = True

    def _push(self, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> None:
        e = self._entry(q, target, robot)
        self.proprio = np.concatenate([self.proprio[:, 1:], e["proprio"][:, None]], 1)
        if self.use_touch:
            self.touch = np.concatenate([self.touch[:, 1:], e["touch"][:, None]], 1)
        if self.use_ends:
            self.ends = np.concatenate([self.ends[:, 1:], e["ends"][:, None]], 1)

    def inputs(self) -> dict[str, torch.Tensor]:
        n = len(self.proprio)
        f = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
        obs = {"obs": f(self.proprio[:, -3:].reshape(n, -1)), "proprio_hist": f(self.proprio)}
        if self.use_touch:
            obs["tactile_hist"] = f(self.touch)
        if self.use_ends:
            obs["obj_ends"] = f(self.ends)
        return obs

    def __call__(self, t: int, q: np.ndarray, target: np.ndarray, robot: HandRobot) -> np.ndarray:
        if not self._fresh:
            self._push(q, target, robot)
        self._fresh = False
        inputs = self.inputs()
        if self.privileged_fn is not None:
            inputs.update(self.privileged_fn(robot))
        action = self.act(inputs).double().numpy().clip(-1.0, 1.0)
        return np.clip(target + self.action_scale * action, self.lower, self.upper)
