"""Simulation throughput, side by side: raw physics, the full task, and a peer MuJoCo hand env.

(a) raw: the scene's physics alone, ``CpuBackend`` (``mujoco.rollout``) stepping envs that hold
    the pen in grasps from the cache, at 1 and 2 threads;
(b) task: ``PenSpinEnv`` with every observation on, small random actions, 2 physics threads and
    one torch thread (the env pins torch to one thread, as training runs it);
(c) peer: gymnasium-robotics ``HandManipulatePen-v1`` (Shadow hand) through its env API, and its
    model under plain ``mj_step``.

Every configuration runs in its own subprocess, so its peak RSS is its own. Numbers are medians
over repeats; the work per repeat is a number of env steps (control steps summed over envs), so
1 env and 1024 envs are timed over the same amount of simulated time. The markdown table at the
end goes into docs/benchmarks.md.

    python benchmarks/bench_sim.py                 # full run, a few minutes on 2 cores
    python benchmarks/bench_sim.py --quick --envs 1 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata

SUBSTEPS = 10
WARMUP_STEPS = 3
PEER_ID = "HandManipulatePen-v1"


# Workers: each runs in a fresh process and prints one JSON line -------------------------------
def _peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else


def _batched_steps(env_steps: int, num_envs: int) -> int:
    return max(2, math.ceil(env_steps / num_envs))


def _time_repeats(step, steps: int, repeats: int, before=None) -> float:
    """Median seconds for ``steps`` calls of ``step``; ``before`` runs untimed at each repeat."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker_raw(num_envs: int, threads: int, env_steps: int, repeats: int) -> dict:
    """Physics only: envs re-seated in cached grasps each repeat, control = the grasp target."""
    import numpy as np

    from penspin.sim.cpu_backend import CpuBackend
    from penspin.task.grasps import load_cache

    backend = CpuBackend(num_envs, substeps=SUBSTEPS, nthread=threads)
    cache = load_cache()
    rows = np.random.default_rng(0).integers(len(cache["q"]), size=num_envs)
    ids = np.arange(num_envs)
    backend.set_pen(ids, cache["radius"][rows].astype(float), cache["length"][rows].astype(float),
                    np.full(num_envs, 0.015), np.zeros((num_envs, 3)), np.ones(num_envs),
                    np.ones(num_envs))
    qpos = np.concatenate([cache["q"][rows], cache["pen_pos"][rows], cache["pen_quat"][rows]], 1)

    def seat() -> None:
        backend.set_qpos_qvel(ids, qpos.astype(float), np.zeros((num_envs, backend.model.nv)))
        backend.ctrl.numpy()[:] = cache["target"][rows][:, None, :]
        backend.qfrc[:] = 0.0
        for _ in range(WARMUP_STEPS):
            backend.step()

    steps = _batched_steps(env_steps, num_envs)
    seconds = _time_repeats(backend.step, steps, repeats, before=seat)
    pen_z = backend.qpos.numpy()[:, backend.layout.pen_qpos][:, 2]
    backend.close()
    control = num_envs * steps / seconds
    return {"control_steps_s": control, "physics_steps_s": control * SUBSTEPS,
            "physics_dt": float(backend.model.opt.timestep), "steps": steps,
            "held_at_end": float((pen_z > 0.595).mean())}


def worker_task(num_envs: int, threads: int, env_steps: int, repeats: int) -> dict:
    """The whole task per control step: physics, noise, pushes, tactile, point cloud, reward."""
    import torch

    from penspin.task.config import TaskConfig
    from penspin.task.env import PenSpinEnv

    cfg = TaskConfig(num_envs=num_envs, num_threads=threads, seed=0)
    env = PenSpinEnv(cfg)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    falls = [0]

    def step() -> None:
        actions = (torch.rand(num_envs, env.num_actions, generator=gen) * 2 - 1) * 0.1
        _, _, _, info = env.step(actions)
        if "episode" in info:
            falls[0] += int(info["episode"]["fell"].sum())

    for _ in range(WARMUP_STEPS):
        step()
    steps = _batched_steps(env_steps, num_envs)
    falls[0] = 0
    seconds = _time_repeats(step, steps, repeats)
    env.close()
    control = num_envs * steps / seconds
    return {"control_steps_s": control, "physics_steps_s": control * cfg.substeps,
            "physics_dt": cfg.physics_dt, "steps": steps, "torch_threads": torch.get_num_threads(),
            "falls_per_1k_steps": 1000 * falls[0] / (num_envs * steps * repeats)}


def worker_peer(env_steps: int, repeats: int) -> dict:
    """The peer through ``env.step`` (one env, its own 20 substeps) and under plain ``mj_step``."""
    import gymnasium
    import gymnasium_robotics
    import mujoco

    gymnasium.register_envs(gymnasium_robotics)
    env = gymnasium.make(PEER_ID)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]
    count = [0]

    def step() -> None:
        _, _, terminated, truncated, _ = env.step(actions[count[0] % len(actions)])
        count[0] += 1
        if terminated or truncated:
            env.reset()

    for _ in range(WARMUP_STEPS):
        step()
    model, data = env.unwrapped.model, env.unwrapped.data
    substeps = int(env.unwrapped.n_substeps)
    seconds = _time_repeats(step, env_steps, repeats)
    env_rate = env_steps / seconds

    nstep = env_steps * substeps
    raw_seconds = _time_repeats(lambda: mujoco.mj_step(model, data, nstep=nstep), 1, repeats,
                                before=lambda: env.reset(seed=0))
    env.close()
    return {"control_steps_s": env_rate, "physics_steps_s": env_rate * substeps,
            "raw_physics_steps_s": nstep / raw_seconds, "physics_dt": float(model.opt.timestep),
            "substeps": substeps, "version": metadata.version("gymnasium-robotics")}


def _worker_main(args) -> None:
    if args.worker == "raw":
        result = worker_raw(args.num_envs, args.threads, args.steps, args.repeats)
    elif args.worker == "task":
        result = worker_task(args.num_envs, args.threads, args.steps, args.repeats)
    else:
        result = worker_peer(args.steps, args.repeats)
    result["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(result))


# Driver --------------------------------------------------------------------------------------
class WorkerFailed(RuntimeError):
    pass


def run_worker(kind: str, steps: int, repeats: int, num_envs: int = 1, threads: int = 1,
               optimize: bool = False) -> dict:
    cmd = [sys.executable, *(["-O"] if optimize else []), os.path.abspath(__file__),
           "--worker", kind, "--num-envs", str(num_envs), "--threads", str(threads),
           "--steps", str(steps),
           "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise WorkerFailed(lines[-1] if lines else f"exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_peer(steps: int, repeats: int) -> tuple[dict | None, str]:
    """The peer's numbers and a note, or None and why it could not run."""
    try:
        return run_worker("peer", steps, repeats), ""
    except WorkerFailed as exc:
        if "AssertionError" not in str(exc):
            return None, str(exc)
    # gymnasium-robotics 1.4.2 asserts ``jnt_type in (mjtJoint.mjJNT_HINGE, ...)``, which is False
    # for numpy ints under mujoco 4; the code after the assert is correct, so run without asserts.
    try:
        result = run_worker("peer", steps, repeats, optimize=True)
    except WorkerFailed as exc:
        return None, str(exc)
    return result, ("run with `python -O`: its joint-type asserts fail under mujoco "
                    f"{metadata.version('mujoco')}; the code they guard runs unchanged")


def _fmt_rate(x: float) -> str:
    return f"{x / 1e3:,.1f}k" if x >= 1e4 else f"{x:,.0f}"


def _row(name: str, envs: int, threads: int, r: dict, physics_key: str = "physics_steps_s",
         control: str | None = None) -> str:
    physics = r[physics_key]
    control = control if control is not None else _fmt_rate(r["control_steps_s"])
    return (f"| {name} | {envs} | {threads} | {_fmt_rate(physics)} | {control} | "
            f"{physics * r['physics_dt']:,.0f} | {r['peak_rss_mib']:,.0f} |")


def _versions() -> str:
    names = ("mujoco", "torch", "numpy", "gymnasium", "gymnasium-robotics")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", type=int, nargs="+", default=[1, 64, 256, 1024],
                   help="env counts for the task runs")
    p.add_argument("--raw-envs", type=int, default=256, help="env count for the raw physics runs")
    p.add_argument("--steps", type=int, default=8192,
                   help="env steps per timed repeat (control steps summed over envs)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats; medians are reported")
    p.add_argument("--no-peer", action="store_true", help="skip gymnasium-robotics")
    p.add_argument("--quick", action="store_true", help="smoke run: few steps, one repeat")
    p.add_argument("--worker", choices=("raw", "task", "peer"), help=argparse.SUPPRESS)
    p.add_argument("--num-envs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker_main(args)
        return
    if args.quick:
        args.steps, args.repeats = 64, 1
    if min(args.envs + [args.raw_envs, args.steps, args.repeats]) < 1:
        p.error("--envs, --raw-envs, --steps and --repeats must be positive")

    load_before = os.getloadavg()
    rows, raw = [], {}
    for threads in (1, 2):
        raw[threads] = r = run_worker("raw", args.steps, args.repeats, args.raw_envs, threads)
        _progress(f"raw {args.raw_envs} envs, {threads} thread(s): "
                  f"{_fmt_rate(r['physics_steps_s'])} physics steps/s "
                  f"({r['held_at_end']:.0%} pens held at the end)")
        rows.append(_row("raw physics (`mujoco.rollout`)", args.raw_envs, threads, r))
    task = {}
    for n in args.envs:
        task[n] = r = run_worker("task", args.steps, args.repeats, n, 2)
        _progress(f"task {n} envs: {_fmt_rate(r['control_steps_s'])} control steps/s "
                  f"({r['falls_per_1k_steps']:.1f} falls per 1k env steps)")
        rows.append(_row("PenSpin task, all observations", n, 2, r))
    peer, peer_note = (None, "skipped (--no-peer)") if args.no_peer else run_peer(
        args.steps, args.repeats)
    if peer is not None:
        _progress(f"peer: {_fmt_rate(peer['control_steps_s'])} env steps/s")
        name = f"peer: gymnasium-robotics {peer['version']} `{PEER_ID}`"
        rows.append(_row(f"{name} env API", 1, 1, peer))
        rows.append(_row(f"{name} raw `mj_step`", 1, 1, peer, "raw_physics_steps_s", "-"))
    else:
        print(f"peer unavailable: {peer_note}")
    load_after = os.getloadavg()

    print()
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {_versions()}.")
    print(f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{args.steps} env steps per repeat, median of {args.repeats}.")
    print()
    print("| configuration | envs | physics threads | physics steps/s | control steps/s "
          "| sim s per wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    scaling = raw[2]["physics_steps_s"] / raw[1]["physics_steps_s"]
    print(f"- 2-thread scaling of raw physics at {args.raw_envs} envs: {scaling:.2f}x")
    if args.raw_envs in task:
        ratio = task[args.raw_envs]["control_steps_s"] / raw[2]["control_steps_s"]
        print(f"- task / raw control steps/s at {args.raw_envs} envs, 2 threads: {ratio:.2f} "
              f"(task code costs {1 / ratio - 1:.0%} on top of physics)")
    if peer is not None:
        ours = raw[1]["physics_steps_s"] * raw[1]["physics_dt"]
        theirs = peer["raw_physics_steps_s"] * peer["physics_dt"]
        print(f"- simulated seconds per wall second, one thread, raw physics: ours {ours:,.0f}, "
              f"peer {theirs:,.0f} ({ours / theirs:.1f}x)")
        best_n = max(task, key=lambda n: task[n]["control_steps_s"])
        best = task[best_n]
        ours = best["physics_steps_s"] * best["physics_dt"]
        theirs = peer["physics_steps_s"] * peer["physics_dt"]
        print(f"- through the env API: ours {ours:,.0f} sim s/s ({best_n} envs, 2 threads), "
              f"peer {theirs:,.0f} sim s/s (1 env) ({ours / theirs:.1f}x)")
        if peer_note:
            print(f"- peer {peer_note}")


if __name__ == "__main__":
    main()
