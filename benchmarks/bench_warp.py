"""Which backend to pick on a CPU: the MuJoCo Warp backend on Warp's CPU device beside the
``mujoco.rollout`` CPU backend, stepping the full task at the same env counts.

Both run ``PenSpinEnv`` with every observation on and the same small random actions; the two
backends alternate repeat by repeat, so a busy machine slows both alike. Prints control steps/s
(env steps summed over envs, medians of the repeats), the warp env's start time (the first one
loads the cached kernels) and, with ``--cold``, the compile time into an empty kernel cache.

    python benchmarks/bench_warp.py                      # 4 and 16 envs
    python benchmarks/bench_warp.py --envs 64 --cold
    python benchmarks/bench_warp.py --returns 64         # + the shipped oracle on both backends
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import penspin.sim.gl  # noqa: F401  (headless GL before mujoco)
from penspin.task.config import TaskConfig
from penspin.task.env import PenSpinEnv

ORACLE = Path(__file__).resolve().parents[1] / "checkpoints" / "oracle.pt"


def _make(backend: str, num_envs: int, **kw) -> PenSpinEnv:
    return PenSpinEnv(TaskConfig(num_envs=num_envs, num_threads=2, backend=backend, **kw))


def _time(env: PenSpinEnv, steps: int, gen: torch.Generator) -> float:
    actions = [0.3 * torch.randn(env.num_envs, 16, generator=gen) for _ in range(steps)]
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - start


def throughput(num_envs: int, steps: int, repeats: int) -> dict[str, float]:
    """Control steps/s of each backend; the warp env's construction time is its kernel load."""
    start = time.perf_counter()
    envs = {"warp": _make("warp", num_envs)}
    envs["warp"].reset()
    envs["warp"].step(torch.zeros(num_envs, 16))
    load = time.perf_counter() - start
    envs["cpu"] = _make("cpu", num_envs)
    envs["cpu"].reset()
    gen = torch.Generator().manual_seed(0)
    times = {k: [] for k in envs}
    for _ in range(repeats):
        for k, env in envs.items():
            times[k].append(_time(env, steps, gen))
    for env in envs.values():
        env.close()
    out = {k: steps * num_envs / statistics.median(v) for k, v in times.items()}
    return out | {"load_s": load}


def cold_compile_seconds() -> float:
    """Build, reset and step a warp env in a fresh process with an empty kernel cache."""
    code = ("import time; t = time.perf_counter(); import penspin.sim.gl, torch; "
            "from penspin.task.config import TaskConfig; from penspin.task.env import PenSpinEnv; "
            "e = PenSpinEnv(TaskConfig(num_envs=2, backend='warp')); e.reset(); "
            "e.step(torch.zeros(2, 16)); print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, env=os.environ | {"WARP_CACHE_PATH": cache})
    return float(out.stdout.split()[-1])


def returns(episodes: int, horizon: int) -> None:
    """The shipped oracle's episodes on both backends: time held and rotation (Welch's t)."""
    from penspin.student.policy import load_policy
    from penspin.task.episodes import run_episodes

    policy = load_policy(ORACLE)
    runs = {b: run_episodes(policy.act, dataclasses.replace(
        policy.task, backend=b, episode_length=horizon, seed=1), episodes, progress=False)
        for b in ("cpu", "warp")}
    for key in ("length", "rotation"):
        a, b = (torch.from_numpy(runs[k][key]).double() for k in ("cpu", "warp"))
        t = (a.mean() - b.mean()) / (a.var() / len(a) + b.var() / len(b)).sqrt()
        print(f"oracle episode {key}: cpu {a.mean():.2f} +- {a.std():.2f}, warp {b.mean():.2f} "
              f"+- {b.std():.2f}, Welch t = {t:.2f} ({episodes} episodes of <= {horizon} steps)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", type=int, nargs="+", default=[4, 16])
    p.add_argument("--steps", type=int, default=10, help="control steps per repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cold", action="store_true", help="also time a cold kernel compile")
    p.add_argument("--returns", type=int, default=0, metavar="EPISODES",
                   help="also compare the shipped oracle's episodes on both backends")
    p.add_argument("--horizon", type=int, default=100, help="control steps per --returns episode")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.cold:
        print(f"cold compile (empty kernel cache, build + reset + 1 step): "
              f"{cold_compile_seconds():.0f} s")
    print("| envs | CPU backend (mujoco.rollout, 2 threads) | Warp CPU device | warp env start s |")
    print("|---|---|---|---|")
    for n in args.envs:
        r = throughput(n, args.steps, args.repeats)
        print(f"| {n} | {r['cpu']:,.0f} | {r['warp']:,.0f} | {r['load_s']:.1f} |", flush=True)
    print("control steps/s (env steps summed over envs), medians of "
          f"{args.repeats} repeats of {args.steps} steps, every observation on")
    if args.returns:
        returns(args.returns, args.horizon)


if __name__ == "__main__":
    main()
