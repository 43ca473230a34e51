"""Which episodes an oracle drops, and whether holding still would have dropped them too.

Runs the same randomised episodes twice, once with the policy and once with the zero action
(hold the starting grasp), and prints the fall rate per friction band, split into early falls
(first 2 s) and later ones, plus how many early falls the two share. Used for docs/oracle.md:

    python docs/diagnose_oracle_falls.py checkpoints/oracle.pt --episodes 512
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from penspin.learning.policy import load_policy
from penspin.task.env import PenSpinEnv

EARLY_STEPS = 40  # 2 s
BANDS = ((0.3, 0.6), (0.6, 0.9), (0.9, 1.5), (1.5, 2.2), (2.2, 2.6), (2.6, 3.01))


def fall_steps(act, task, episodes: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Step at which each episode's pen fell (-1: held for ``steps``) and its friction."""
    falls, frictions = [], []
    for start in range(0, episodes, 256):
        n = min(256, episodes - start)
        env = PenSpinEnv(dataclasses.replace(task, num_envs=n, seed=seed + start))
        obs = env.reset()
        frictions.append(env.pen_friction.numpy().copy())
        fall = np.full(n, -1)
        active = torch.ones(n, dtype=torch.bool)
        for t in range(steps):
            obs, _, done, info = env.step(act(obs))
            first = done & active
            if first.any():
                ids = done.nonzero().flatten()
                take = first[ids]
                fell = ids[take][info["episode"]["fell"][take]]
                fall[fell.numpy()] = t + 1
            active &= ~done
        env.close()
        falls.append(fall)
    return np.concatenate(falls), np.concatenate(frictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint)
    task = policy.task
    fall, friction = fall_steps(policy.act, task, args.episodes, task.episode_length, args.seed)
    zero, friction_zero = fall_steps(lambda obs: torch.zeros(len(obs["obs"]), 16), task,
                                     args.episodes, EARLY_STEPS, args.seed)
    assert np.array_equal(friction, friction_zero), "the two passes must see the same episodes"
    early = (fall > 0) & (fall <= EARLY_STEPS)
    later = fall > EARLY_STEPS
    early_zero = zero > 0
    print(f"{args.episodes} episodes: policy fell in {np.mean(fall > 0):.3f} "
          f"(first 2 s: {early.mean():.3f}); zero action fell in the first 2 s in "
          f"{early_zero.mean():.3f}; both: {(early & early_zero).mean():.3f}")
    print("policy falls per 2 s:", np.histogram(fall[fall > 0] * task.control_dt,
                                               bins=np.arange(0.0, 22.0, 2.0))[0].tolist())
    print("friction band   n   policy early  policy later  zero-action early")
    for lo, hi in BANDS:
        sel = (friction >= lo) & (friction < hi)
        print(f"[{lo:.1f}, {hi:.1f})  {sel.sum():4d}   {early[sel].mean():11.2f}  "
              f"{later[sel].mean():12.2f}  {early_zero[sel].mean():17.2f}")


if __name__ == "__main__":
    main()
