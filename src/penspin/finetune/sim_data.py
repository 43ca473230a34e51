"""Simulated samples to mix into finetuning, so the student keeps what simulation taught it
while it fits the robot's data (the original finetuned on real data alone): states a policy
visits while it drives, labelled with that policy's actions. The policy is an oracle
(``train.sim_oracle``) or the frozen starting student (``train.anchor=start``), which anchors
the finetuned student to where it started rather than to another policy."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from penspin.oracle.trainer import load_oracle
from penspin.student.distill import check_oracle_fits
from penspin.task.config import TaskConfig


@torch.no_grad()
def policy_samples(act: Callable[[dict], torch.Tensor], task: TaskConfig, keys: list[str],
                   samples: int, seed: int, num_envs: int = 64, check=None
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``samples`` student inputs (``keys``) from states ``act`` visits while it drives, and
    its actions there, as behaviour cloning collects them; ``check(env)`` may refuse the env."""
    from penspin.task.env import PenSpinEnv

    env = PenSpinEnv(dataclasses.replace(task, num_envs=num_envs, seed=seed))
    if check is not None:
        check(env)
    obs = env.reset()
    inputs: dict[str, list] = {k: [] for k in keys}
    labels = []
    for _ in range(math.ceil(samples / num_envs)):
        action = act(obs)
        for k in keys:
            inputs[k].append(obs[k])
        labels.append(action)
        obs, *_ = env.step(action)
    env.close()
    return ({k: torch.cat(v)[:samples] for k, v in inputs.items()},
            torch.cat(labels)[:samples])


def oracle_samples(oracle_path: str, task: TaskConfig, keys: list[str], samples: int,
                   seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`policy_samples` of an oracle checkpoint."""
    oracle = load_oracle(oracle_path)
    return policy_samples(oracle.act_inference, task, keys, samples, seed, check=lambda env:
                          check_oracle_fits(oracle, env, where=f"oracle {oracle_path}"))
