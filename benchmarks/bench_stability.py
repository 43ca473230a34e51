"""How often the physics blows up on each backend: worlds flagged as diverged, worlds that
overflowed Warp's contact or constraint buffers, and worlds moving implausibly fast, after each
control step of the full task.

The first oracle training on a GPU (docs/gpu.md) logged episode rewards of -1e8: a few worlds
per 10,000 env steps reached absurd speeds without crossing the 1e10 divergence bound, and the
reward's position and velocity penalties swallowed everything else. This measures those rates
side by side, on random actions (early training) or a policy (``--policy``).

    python benchmarks/bench_stability.py --backends cpu --envs 64 --steps 100
    python benchmarks/bench_stability.py --backends cpu warp-graph warp-eager --device cuda \
        --envs 8192 --steps 200 --policy checkpoints/oracle.pt
"""

from __future__ import annotations

import argparse
import os

import torch

from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv

FAST = 100.0  # rad/s or m/s in any degree of freedom: far beyond a hand spinning a pen


def measure(backend: str, device: str, num_envs: int, steps: int, policy_path: str) -> dict:
    warp = backend.startswith("warp")
    env = PenSpinEnv(TaskConfig(
        num_envs=num_envs, num_threads=os.cpu_count() or 1, backend="warp" if warp else "cpu",
        device=device if warp else "cpu", cuda_graph=backend == "warp-graph"))
    d = env.device
    back = env.backend
    counts = {k: torch.zeros((), dtype=torch.long, device=d)
              for k in ("diverged", "overflow", "fast")}
    top = torch.zeros((), device=d)
    step = back.step

    def counted_step():
        nonlocal top
        step()
        speed = back.qvel.abs().amax(1).float()
        counts["diverged"] += back.diverged.sum()
        counts["fast"] += ((speed > FAST) & ~back.diverged).sum()
        top = torch.maximum(top, torch.where(back.diverged, 0.0, speed).max())
        if warp:
            counts["overflow"] += back.overflowed.sum()

    back.step = counted_step
    act = None
    if policy_path:
        from penspin.student.policy import load_policy

        act = load_policy(policy_path, device=str(d)).act
    gen = torch.Generator(d).manual_seed(0)
    obs = env.reset()
    for _ in range(steps):
        actions = (act(obs) if act else (0.5 * torch.randn(num_envs, 16, generator=gen, device=d)))
        obs, *_ = env.step(actions)
    env.close()
    n = num_envs * steps
    return {"backend": backend, "env_steps": n, "top_speed": float(top),
            **{f"{k}_per_1e4": 1e4 * int(v) / n for k, v in counts.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["cpu", "warp-graph"],
                   choices=["cpu", "warp-graph", "warp-eager"])
    p.add_argument("--device", default="cpu", help="the warp backends' device: cpu or cuda")
    p.add_argument("--envs", type=int, default=256)
    p.add_argument("--steps", type=int, default=200, help="control steps")
    p.add_argument("--policy", default="", help="act with this checkpoint, not random actions")
    args = p.parse_args()
    print(f"per 10,000 env steps; {'policy ' + args.policy if args.policy else 'random actions'}"
          f"; fast: some |qvel| > {FAST:g} without a divergence flag")
    print("| backend | envs x steps | diverged | overflowed buffers | fast | top speed |")
    print("|---|---|---|---|---|---|")
    for b in args.backends:
        r = measure(b, args.device, args.envs, args.steps, args.policy)
        print(f"| {b} | {args.envs} x {args.steps} | {r['diverged_per_1e4']:.2f} | "
              f"{r['overflow_per_1e4']:.2f} | {r['fast_per_1e4']:.2f} | {r['top_speed']:.3g} |",
              flush=True)


if __name__ == "__main__":
    main()
