"""Distillation throughput: oracle samples per second of `penspin train-student`, per setting.

Each variant (a list of `key=value` overrides of train-student) runs a few iterations from the
given oracle after a warm-up; wall time splits into the env step (physics and task code),
inference (the oracle labelling, and the student when it drives) and the student's update.
The task's own control steps/s (random actions, no network) is measured in the same run, so the
ratio to it is comparable across machines. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics

from task_rate import task_steps_per_s

from penspin.config import apply_overrides
from penspin.oracle.trainer import oracle_from_payload
from penspin.rl.checkpoint import load_checkpoint
from penspin.student.run_distill import build, default_config

VARIANTS = {
    "transformer, 2 epochs": ["train.network.history_encoder=transformer"],
    "conv, 2 epochs": ["train.network.history_encoder=conv"],
    "conv, 1 epoch": ["train.network.history_encoder=conv", "train.mini_epochs=1"],
    "conv, 2 epochs, 2 learn threads": ["train.network.history_encoder=conv",
                                        "train.learn_threads=2"],
}


def measure(payload: dict, overrides: list[str], iterations: int, run_dir: str) -> dict:
    cfg = apply_overrides(default_config(payload), [
        "train.mini_epochs=2", "train.logger=none", "train.progress=false",
        "train.eval_every=0", *overrides])
    trainer = build(cfg, run_dir, oracle_from_payload(payload))
    trainer.obs = trainer.env.reset()
    trainer._iteration()  # warm-up
    rows = [trainer._iteration() for _ in range(iterations)]
    task = task_steps_per_s(trainer.env, cfg.train.horizon)
    trainer.env.close()
    total = sum(r["time/iteration_s"] for r in rows)
    samples = trainer.steps_per_iteration() * iterations
    return {
        "samples_per_s": samples / total, "task_steps_per_s": task,
        "env": sum(r["time/env_step_s"] for r in rows) / total,
        "inference": sum(r["time/policy_s"] for r in rows) / total,
        "update": sum(r["time/learn_s"] for r in rows) / total,
        "iter_s": statistics.median(r["time/iteration_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", default="checkpoints/oracle.pt")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every variant, e.g. env.num_envs=64")
    parser.add_argument("--run-dir", default="/tmp/penspin-bench-distill")
    args = parser.parse_args()
    payload = load_checkpoint(args.oracle, "oracle")
    print("| setting | samples/s | task alone (steps/s) | ratio | env step | inference | "
          "update |")
    print("|---|---|---|---|---|---|---|")
    for name in args.variants:
        r = measure(payload, [*VARIANTS[name], *args.set], args.iterations, args.run_dir)
        print(f"| {name} | {r['samples_per_s']:.0f} | {r['task_steps_per_s']:.0f} | "
              f"{r['samples_per_s'] / r['task_steps_per_s']:.2f} | {r['env']:.0%} | "
              f"{r['inference']:.0%} | {r['update']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
