"""Simulated oracle samples to mix into finetuning, so the student keeps what simulation taught
it while it fits the robot's data (the original finetuned on real data alone)."""

from __future__ import annotations

import dataclasses
import math

import torch

from penspin.learning.distill import check_oracle_fits
from penspin.learning.oracle_trainer import load_oracle
from penspin.task.config import TaskConfig


@torch.no_grad()
def oracle_samples(oracle_path: str, task: TaskConfig, keys: list[str], samples: int,
                   seed: int, num_envs: int = 64) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``samples`` student inputs (``keys``) from states the oracle visits while it drives, and
    the oracle's actions there, as behaviour cloning collects them."""
    from penspin.task.env import PenSpinEnv

    env = PenSpinEnv(dataclasses.replace(task, num_envs=num_envs, seed=seed))
    oracle = load_oracle(oracle_path)
    check_oracle_fits(oracle, env, where=f"oracle {oracle_path}")
    obs = env.reset()
    inputs: dict[str, list] = {k: [] for k in keys}
    labels = []
    for _ in range(math.ceil(samples / num_envs)):
        action = oracle.act_inference(obs)
        for k in keys:
            inputs[k].append(obs[k])
        labels.append(action)
        obs, *_ = env.step(action)
    env.close()
    return ({k: torch.cat(v)[:samples] for k, v in inputs.items()},
            torch.cat(labels)[:samples])
