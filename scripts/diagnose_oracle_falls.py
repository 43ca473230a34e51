"""Which episodes an oracle drops, and whether holding still would have dropped them too.

Runs the same randomised episodes twice, once with the policy and once with the zero action
(hold the starting grasp), and prints the fall rate per friction band, split into early falls
(first 2 s) and later ones, plus how many early falls the two share. Used for docs/oracle.md:

    python scripts/diagnose_oracle_falls.py checkpoints/oracle-v1.pt --episodes 512
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from penspin.student.policy import load_policy
from penspin.task.episodes import run_episodes

EARLY_STEPS = 40  # 2 s
BANDS = ((0.3, 0.6), (0.6, 0.9), (0.9, 1.5), (1.5, 2.2), (2.2, 2.6), (2.6, 3.01))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint)
    task = dataclasses.replace(policy.task, seed=args.seed)
    ep = run_episodes(policy.act, task, args.episodes, progress=False)
    held = dataclasses.replace(task, episode_length=EARLY_STEPS)
    zero = run_episodes(lambda obs: torch.zeros(len(obs["obs"]), 16), held, args.episodes,
                        progress=False)
    friction = ep["friction"]
    assert np.array_equal(friction, zero["friction"]), "the two passes must see the same episodes"
    early = ep["fell"] & (ep["length"] <= EARLY_STEPS)
    later = ep["fell"] & (ep["length"] > EARLY_STEPS)
    early_zero = zero["fell"]
    print(f"{args.episodes} episodes: policy fell in {ep['fell'].mean():.3f} "
          f"(first 2 s: {early.mean():.3f}); zero action fell in the first 2 s in "
          f"{early_zero.mean():.3f}; both: {(early & early_zero).mean():.3f}")
    fall_s = ep["length"][ep["fell"]] * task.control_dt
    print("policy falls per 2 s:", np.histogram(fall_s, bins=np.arange(0.0, 22.0, 2.0))[0].tolist())
    print("friction band   n   policy early  policy later  zero-action early")
    for lo, hi in BANDS:
        sel = (friction >= lo) & (friction < hi)
        print(f"[{lo:.1f}, {hi:.1f})  {sel.sum():4d}   {early[sel].mean():11.2f}  "
              f"{later[sel].mean():12.2f}  {early_zero[sel].mean():17.2f}")


if __name__ == "__main__":
    main()
