"""The task on a GPU: control steps/s of the Warp backend at 1024 to 16384 envs, every
observation on (point cloud, touch, privileged state).

For each env count it times the full task step (physics, observations, reward, resets of the
envs that finished, with the CUDA graph and, with ``--modes graph eager``, without it) and physics
alone (``backend.step``), synchronising the GPU around each timed block; medians of the repeats.
Prints a markdown table naming the GPU and, with ``--json``, writes the numbers there.

    python benchmarks/bench_gpu.py                                   # 1024 ... 16384 envs
    python benchmarks/bench_gpu.py --device cpu --envs 4 --steps 2   # a smoke run on the CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn, steps: int) -> float:
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        fn(i)
    _sync(device)
    return time.perf_counter() - start


def measure(num_envs: int, device: str, graph: bool, steps: int, repeats: int) -> dict:
    """Control steps/s of the task and of physics alone, and the device memory in use."""
    env = PenSpinEnv(TaskConfig(num_envs=num_envs, backend="warp", device=device,
                                cuda_graph=graph))
    d = env.device
    gen = torch.Generator(d).manual_seed(0)
    actions = [0.3 * torch.randn(num_envs, 16, generator=gen, device=d) for _ in range(steps)]
    env.reset()
    env.step(actions[0])  # warm-up: first launches, first resets
    task, physics = [], []
    for _ in range(repeats):
        task.append(_timed(d, lambda i: env.step(actions[i]), steps))
        physics.append(_timed(d, lambda i: env.backend.step(), steps))
    used = 0.0
    if d.type == "cuda":
        free, total = torch.cuda.mem_get_info(d)
        used = (total - free) / 2**30
    captured = env.backend.graph
    env.close()
    per_s = steps * num_envs
    return {"envs": num_envs, "graph": captured,
            "task_steps_per_s": per_s / statistics.median(task),
            "physics_control_steps_per_s": per_s / statistics.median(physics),
            "substeps": env.cfg.substeps, "device_memory_gib": used}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[1024, 4096, 8192, 16384])
    p.add_argument("--device", default="cuda")
    p.add_argument("--modes", nargs="+", default=["graph"], choices=["graph", "eager"])
    p.add_argument("--steps", type=int, default=20, help="control steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
            else "Warp CPU device")
    print(f"{name}; control steps/s (env steps summed over envs), medians of {args.repeats} "
          f"repeats of {args.steps} steps, every observation on")
    print("| envs | CUDA graph | task control steps/s | physics physics steps/s | "
          "physics share | device memory GiB |")
    print("|---|---|---|---|---|---|")
    rows = []
    for n in args.envs:
        for mode in args.modes:
            r = measure(n, args.device, mode == "graph", args.steps, args.repeats)
            rows.append(r | {"device": name})
            share = r["task_steps_per_s"] / r["physics_control_steps_per_s"]
            print(f"| {n} | {'yes' if r['graph'] else 'no'} | {r['task_steps_per_s']:,.0f} | "
                  f"{r['physics_control_steps_per_s'] * r['substeps']:,.0f} | {share:.0%} | "
                  f"{r['device_memory_gib']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
