"""Gymnasium view of one pen-spinning env, for tools that expect a ``gymnasium.Env``.

Training uses the batched torch ``PenSpinEnv`` directly; this wrapper serves single-env users
(Stable-Baselines3, env checkers, quick scripts). Importing this module registers
``PenSpin-v0``; ``gymnasium.make("penspin.task.gym_env:PenSpin-v0")`` imports and makes it in one
call. ``render_mode="rgb_array"`` makes ``render()`` return frames, so
``gymnasium.wrappers.RecordVideo`` works (it needs ``pip install moviepy``).
"""

from __future__ import annotations

# Imported first: it chooses a headless GL backend before anything imports mujoco.
from penspin.sim.frames import EnvFrames

# isort: split
import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from penspin.config import ConfigError, apply_overrides
from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv

ENV_ID = "PenSpin-v0"


class _FinalObsPenSpinEnv(PenSpinEnv):
    """A PenSpinEnv that keeps the observation an episode ended in.

    ``PenSpinEnv.step`` resets finished envs itself and returns the next episode's first
    observation; a gymnasium step that ends an episode must return the observation it ended in,
    so it is copied just before the auto-reset overwrites the state and history buffers in place
    (``_observe`` draws no random numbers, so this changes nothing else).
    """

    final_obs: dict[str, torch.Tensor] | None = None

    def _reset_envs(self, ids: torch.Tensor) -> None:
        if self._obs is not None:
            self.final_obs = {k: v.clone() for k, v in self._observe().items()}
        super()._reset_envs(ids)


class PenSpinGymEnv(gymnasium.Env):
    """One PenSpin env: dict of float32 observations, 16 actions in [-1, 1].

    ``terminated`` means the pen fell (or the physics diverged), ``truncated`` the 400-step
    time-out. ``reset(seed=s)`` reseeds everything the task draws (grasp, physics parameters,
    noise, pushes), so equal seeds give equal episodes. With ``render_mode="rgb_array"``,
    ``render()`` draws the current state from ``camera`` ("front" or "top") as (H, W, 3) uint8.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, config: TaskConfig | None = None, overrides: Sequence[str] = (),
                 render_mode: str | None = None, width: int = 640, height: int = 480,
                 camera: str = "front"):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ConfigError(f"render_mode must be None or one of "
                              f"{self.metadata['render_modes']}, got {render_mode!r}")
        cfg = apply_overrides(config or TaskConfig(), list(overrides))
        self.env = _FinalObsPenSpinEnv(dataclasses.replace(cfg, num_envs=1, num_threads=1))
        # One frame per control step: RecordVideo plays episodes back in real time.
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.env.dt}
        self.render_mode = render_mode
        self._frames = None
        if render_mode == "rgb_array":
            self._frames = EnvFrames(self.env.backend, 0, camera, width, height)
        self.observation_space = spaces.Dict({
            key: spaces.Box(-np.inf, np.inf, shape, np.float32)
            for key, shape in self.env.obs_shapes.items()
        })
        self.action_space = spaces.Box(-1.0, 1.0, (PenSpinEnv.num_actions,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.env.gen.manual_seed(seed)
        obs = self.env.reset()
        self.env.final_obs = None
        return _to_numpy(obs), {}

    def step(self, action):
        actions = torch.as_tensor(np.asarray(action, dtype=np.float32),
                                  device=self.env.device).reshape(1, -1)
        obs, reward, done, info = self.env.step(actions)
        truncated = bool(info["time_outs"][0])
        terminated = bool(done[0]) and not truncated
        if done[0]:
            obs, self.env.final_obs = self.env.final_obs, None
        out = {"log": {k: float(v) for k, v in info["log"].items()}}
        if "episode" in info:
            out["episode"] = {k: (bool(v[0]) if k == "fell" else float(v[0]))
                              for k, v in info["episode"].items()}
        return _to_numpy(obs), float(reward[0]), terminated, truncated, out

    def render(self) -> np.ndarray | None:
        if self._frames is None:
            gymnasium.logger.warn("render() needs render_mode='rgb_array' when the env is made")
            return None
        return self._frames.frame(self.env.tactile[0].cpu().numpy())

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self.env.close()


def _to_numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Fresh float32 arrays without the env axis (callers keep them; the env reuses tensors)."""
    return {k: np.array(v[0].cpu().numpy(), dtype=np.float32, copy=True) for k, v in obs.items()}


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="penspin.task.gym_env:PenSpinGymEnv")
