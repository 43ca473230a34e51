"""``penspin eval``: the paper's simulation metrics, which the original code never computed.

Each of K randomised envs runs one 20 s episode with the deterministic policy. Reported with 95%
intervals: time to fall, survival to the end, rotation speed about +z, total rotation (rad and
turns) and pen tilt, overall and per pen length.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from penspin.cli_support import resolve
from penspin.evaluation.stats import mean_ci, rate_ci
from penspin.task.config import TaskConfig
from penspin.task.episodes import run_episodes

LENGTH_BINS = (0.0, 0.12, 0.14, 1.0)  # m: short, medium, long pens
FRICTION_BINS = (0.0, 0.9, 2.3, 10.0)  # slippery, medium, sticky: survival is U-shaped in it


def summarise(ep: dict[str, np.ndarray], horizon_s: float) -> dict:
    held = ep["length"] * ep["dt"]
    return {
        "episodes": int(len(held)),
        "time_to_fall_s": mean_ci(held),
        "survival_rate": rate_ci(int((~ep["fell"]).sum()), len(held)),
        "rotation_speed_rad_s": mean_ci(ep["rotation"] / np.maximum(held, 1e-9)),
        "total_rotation_rad": mean_ci(ep["rotation"]),
        "total_rotation_turns": mean_ci(ep["rotation"] / (2 * math.pi)),
        "tilt_deg": mean_ci(ep["tilt"]),
        "horizon_s": horizon_s,
    }


def _per_bin(ep: dict[str, np.ndarray], key: str, edges: tuple[float, ...], fmt: str,
             unit: str, horizon: float) -> dict:
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (ep[key] >= lo) & (ep[key] < hi)
        if sel.any():
            sub = {k: v[sel] for k, v in ep.items()}
            out[f"{lo:{fmt}}-{hi:{fmt}}{unit}"] = summarise(sub, horizon)
    return out


def evaluate(policy_act, task: TaskConfig, episodes: int, progress: bool = True) -> dict:
    ep = run_episodes(policy_act, task, episodes, progress=progress)
    horizon = task.episode_length * task.control_dt
    metrics = summarise(ep, horizon)
    metrics["per_pen_length"] = _per_bin(ep, "pen_length", LENGTH_BINS, ".2f", "m", horizon)
    metrics["per_friction"] = _per_bin(ep, "friction", FRICTION_BINS, ".1f", "", horizon)
    # When the falls happen: most of an oracle's come in the first second (docs/oracle.md).
    fall_s = (ep["length"] * ep["dt"])[ep["fell"]]
    bins = np.arange(0.0, horizon + 2.0, 2.0)
    metrics["falls_per_2s"] = np.histogram(fall_s, bins=bins)[0].tolist()
    return metrics


def format_table(metrics: dict) -> str:
    rows = [("time to fall (s)", "time_to_fall_s"),
            (f"survival to {metrics['horizon_s']:g} s", "survival_rate"),
            ("rotation speed +z (rad/s)", "rotation_speed_rad_s"),
            ("total rotation (rad)", "total_rotation_rad"),
            ("total rotation (turns)", "total_rotation_turns"), ("pen tilt (deg)", "tilt_deg")]
    lines = [f"{'metric':28s} {'mean':>9s}   95% interval"]
    for label, key in rows:
        m = metrics[key]
        lines.append(f"{label:28s} {m['mean']:9.3f}   [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
    for name, sub in metrics["per_pen_length"].items():
        lines.append(f"  pen {name}: n={sub['episodes']}, survival "
                     f"{sub['survival_rate']['mean']:.2f}, rotation "
                     f"{sub['rotation_speed_rad_s']['mean']:.3f} rad/s, fall "
                     f"{sub['time_to_fall_s']['mean']:.1f} s")
    for name, sub in metrics["per_friction"].items():
        lines.append(f"  friction {name}: n={sub['episodes']}, survival "
                     f"{sub['survival_rate']['mean']:.2f}, fall "
                     f"{sub['time_to_fall_s']['mean']:.1f} s")
    lines.append("falls per 2 s of the episode: " + " ".join(map(str, metrics["falls_per_2s"])))
    return "\n".join(lines)


def comparison_table(results: list[dict]) -> str:
    """Markdown: one row per policy, mean [95% interval] per metric."""
    cols = [("time to fall (s)", "time_to_fall_s"),
            (f"survival to {results[0]['horizon_s']:g} s", "survival_rate"),
            ("rotation +z (rad/s)", "rotation_speed_rad_s"), ("turns", "total_rotation_turns"),
            ("tilt (deg)", "tilt_deg")]
    lines = ["| policy | kind | " + " | ".join(c for c, _ in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for r in results:
        cells = [f"{r[k]['mean']:.2f} [{r[k]['ci95'][0]:.2f}, {r[k]['ci95'][1]:.2f}]"
                 for _, k in cols]
        lines.append(f"| {r['checkpoint']} | {r['policy_kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> None:
    """Evaluate one or more checkpoints on the same episodes: the first one's task settings,
    each policy with its own observation settings (an ablated oracle reads no touch or no point
    cloud; what a policy reads does not change the pens, grasps or physics of an episode)."""
    from penspin.student.policy import load_policy

    if args.episodes < 1:
        raise SystemExit("penspin eval: --episodes must be >= 1")
    torch.set_num_threads(1)
    policies = [load_policy(path) for path in args.checkpoint]
    task = resolve(policies[0].task if policies else TaskConfig(), args)
    if task is None:
        return
    for policy in policies:  # beside the task's tensors (a warp env on cuda keeps them there)
        policy.model.to(task.device)
    results = []
    for policy in policies:
        metrics = evaluate(policy.act, dataclasses.replace(task, obs=policy.task.obs),
                           args.episodes)
        metrics["checkpoint"] = policy.path
        metrics["policy_kind"] = policy.kind
        print(f"== {policy.path} ({policy.kind})")
        print(format_table(metrics))
        results.append(metrics)
    if len(results) > 1:
        print(comparison_table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        data = results[0] if len(results) == 1 else {"task": dataclasses.asdict(task),
                                                     "policies": results}
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out}")
