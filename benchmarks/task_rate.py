"""The task's own speed, the yardstick the training benchmarks are measured against."""

from __future__ import annotations

import time

import torch


def task_steps_per_s(env, steps: int) -> float:
    """Control steps/s of the task alone: the same env, random actions, no network."""
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        env.step(torch.rand(env.num_envs, env.num_actions) * 2 - 1)
    return steps * env.num_envs / (time.perf_counter() - start)
