"""Student inference latency on one CPU core: one control step of the exported DeployedStudent.

A real hand runs the student at 20 Hz (50 ms per step), so one step must cost a few ms at most:
the target is p99 < 5 ms. Timed is ``DeployedStudent.act`` (input checks, FK, network) with
``torch.set_num_threads(1)``, after a warm-up, over ``--steps`` calls. Latency does not depend on
the weights, so by default each input mode is exported from a randomly initialised student;
``--export DIR`` times a real export instead. Prints one markdown row per mode.

    python benchmarks/bench_student.py
    python benchmarks/bench_student.py --export runs/student/export --steps 5000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from penspin.config import to_dict
from penspin.deploy import DeployedStudent
from penspin.rl.checkpoint import save_checkpoint
from penspin.sim import allegro as A
from penspin.student.export import export_student
from penspin.student.network import INPUT_MODES, StudentActorCritic
from penspin.student.run_distill import StudentRunConfig

TARGET_P99_MS = 5.0
WARMUP = 50


def _random_export(mode: str, where: Path) -> Path:
    model = StudentActorCritic(input_mode=mode)
    ckpt = where / f"{mode}.pt"
    save_checkpoint(ckpt, {"kind": "student", "config": to_dict(StudentRunConfig()),
                           "model_args": model.model_args, "model": model.state_dict()})
    return export_student(ckpt, where / mode)


def _inputs(policy: DeployedStudent) -> dict:
    q0 = torch.tensor(A.REAL_INIT_QPOS, dtype=torch.float32)
    entry = torch.cat([q0, q0])
    hist = entry + 0.01 * torch.randn(30, 32)
    extra = {"tactile_hist": (torch.rand(30, 32) < 0.2).float(),
             "obj_ends": 0.05 * torch.randn(3, 6)}
    return {"proprio_hist": hist, "obs": hist[-3:].reshape(96), "q": hist[-1, :16],
            **{k: v for k, v in extra.items() if k in policy.inputs}}


def time_policy(policy: DeployedStudent, steps: int) -> tuple[float, float]:
    """(median, p99) milliseconds per ``act`` call."""
    x = _inputs(policy)
    for _ in range(WARMUP):
        policy.act(**x)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        policy.act(**x)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", default="", help="exported student folder to time")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--modes", nargs="*", default=list(INPUT_MODES), choices=INPUT_MODES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}, "
          f"{args.steps} steps")
    print("| student | input mode | median (ms) | p99 (ms) | p99 < 5 ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        if args.export:
            runs = [("exported", DeployedStudent.load(args.export))]
        else:
            runs = [("random weights", DeployedStudent.load(_random_export(m, Path(tmp))))
                    for m in args.modes]
        for label, policy in runs:
            median, p99 = time_policy(policy, args.steps)
            ok = "yes" if p99 < TARGET_P99_MS else "NO"
            print(f"| {label} | {policy.input_mode} | {median:.3f} | {p99:.3f} | {ok} |")


if __name__ == "__main__":
    main()
