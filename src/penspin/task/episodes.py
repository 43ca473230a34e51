"""Closed-loop episodes: a policy drives K randomised envs for one full episode each.

Shared by ``penspin eval`` and by trainers that choose checkpoints by how long the policy keeps
the pen rather than by a training loss.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv


def run_episodes(policy_act, task: TaskConfig, episodes: int, chunk: int = 256,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """One full episode per env, in chunks of ``chunk`` envs; returns per-episode arrays."""
    out: dict[str, list] = {k: [] for k in ("length", "fell", "rotation", "tilt", "pen_length",
                                        "friction")}
    done_eps = 0
    bar = tqdm(total=episodes, desc="eval", unit="ep", disable=not progress)
    while done_eps < episodes:
        n = min(chunk, episodes - done_eps)
        env = PenSpinEnv(dataclasses.replace(task, num_envs=n, seed=task.seed + done_eps))
        obs = env.reset()
        pen_length = env.pen_length.clone()
        friction = env.pen_friction.clone()
        d = env.device
        active = torch.ones(n, dtype=torch.bool, device=d)
        length = torch.zeros(n, device=d)
        rotation = torch.zeros(n, device=d)
        tilt_sum = torch.zeros(n, device=d)
        fell = torch.zeros(n, dtype=torch.bool, device=d)
        for _ in range(task.episode_length):
            tilt = torch.rad2deg(torch.asin(env._pen_axis()[:, 2].abs().clamp(max=1.0)))
            tilt_sum += torch.where(active, tilt, torch.zeros_like(tilt))
            obs, _, done, info = env.step(policy_act(obs))
            # Every env reports its first episode when it ends (fall or the 20 s time-out).
            first = done & active
            if first.any():
                ids = done.nonzero().flatten()
                take = first[ids]
                ep = info["episode"]
                length[ids[take]] = ep["length"][take]
                rotation[ids[take]] = ep["rotation"][take]
                fell[ids[take]] = ep["fell"][take]
            active &= ~done
            if not active.any():
                break
        env.close()
        for key, value in (("length", length), ("fell", fell), ("rotation", rotation),
                           ("tilt", tilt_sum / length.clamp_min(1)),
                           ("pen_length", pen_length), ("friction", friction)):
            out[key].append(value.cpu().numpy())
        done_eps += n
        bar.update(n)
    bar.close()
    result = {k: np.concatenate(v) for k, v in out.items()}
    result["dt"] = np.full(len(result["length"]), task.control_dt)
    return result
