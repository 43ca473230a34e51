"""Where oracle-training time goes: physics, task code, policy inference and the PPO update.

Runs a few PPO iterations of `penspin train-oracle` (256 envs by default) for each variant (a
list of `key=value` overrides: the update's levers) and splits wall time into MuJoCo physics
(the backend's rollout call), task code (everything else in env.step), policy inference during
rollouts, and learning (the PPO update). The task's own control steps/s (random actions, no
network) is measured right after each variant, so training speed reads as a fraction of it.
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from task_rate import task_steps_per_s

from penspin.config import apply_overrides
from penspin.oracle.run import OracleRunConfig, build

VARIANTS = {  # the defaults: 3 epochs, 50 points, 2 learn threads
    "defaults": [],
    "1 learn thread": ["train.learn_threads=1"],
    "5 epochs": ["train.ppo.mini_epochs=5"],
    "100 points": ["env.obs.num_points=100"],
    "PenSpin's update (5 epochs, 100 points)": ["train.ppo.mini_epochs=5",
                                                "env.obs.num_points=100"],
}


def measure(num_envs: int, iterations: int, overrides: list[str], run_dir: str) -> dict:
    cfg = apply_overrides(OracleRunConfig(), [
        f"env.num_envs={num_envs}", "train.logger=none", "train.progress=false",
        "train.save_every=100000", *overrides,
    ])
    trainer = build(cfg, run_dir)
    backend = trainer.env.backend
    physics = []
    step = backend.step
    on_gpu = trainer.env.device.type == "cuda"

    def timed_step():
        if on_gpu:  # kernels run asynchronously: time them, not their launches
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if on_gpu:
            torch.cuda.synchronize()
        physics.append(time.perf_counter() - t)

    backend.step = timed_step
    trainer.obs = trainer.env.reset()
    trainer._iteration()  # warm-up (allocations, first resets)
    physics.clear()
    rows = [trainer._iteration() for _ in range(iterations)]
    phys = sum(physics)
    task = task_steps_per_s(trainer.env, trainer.cfg.ppo.horizon_length * iterations)
    trainer.env.close()
    total = sum(r["time/iteration_s"] for r in rows)
    env = sum(r["time/env_step_s"] for r in rows)
    learn = sum(r["time/learn_s"] for r in rows)
    policy = sum(r["time/policy_s"] for r in rows)
    steps = trainer.steps_per_iteration() * iterations
    return {
        "envs": num_envs, "steps_per_s": steps / total, "task_steps_per_s": task,
        "physics": phys / total, "task": (env - phys) / total, "policy": policy / total,
        "learn": learn / total, "learn_over_physics": learn / phys,
        "iter_s": statistics.median(r["time/iteration_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every variant, e.g. train.ppo.horizon_length=4")
    parser.add_argument("--run-dir", default="/tmp/penspin-bench-train")
    args = parser.parse_args()
    print("| envs | setting | env steps/s (training) | task alone (steps/s) | training / task | "
          "physics | task code | policy | learning | learning / physics |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.variants:
        r = measure(args.envs, args.iterations, [*VARIANTS[name], *args.set], args.run_dir)
        print(f"| {r['envs']} | {name} | {r['steps_per_s']:.0f} | {r['task_steps_per_s']:.0f} | "
              f"{r['steps_per_s'] / r['task_steps_per_s']:.2f} | "
              f"{r['physics']:.0%} | {r['task']:.0%} | {r['policy']:.0%} | {r['learn']:.0%} | "
              f"{r['learn_over_physics']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
