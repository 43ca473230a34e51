"""``penspin eval --robot``: policies and open-loop replay on a robot, with the paper's metrics.

Every policy runs the same trials: trial i starts from trajectory i's start state with its pen,
and the proxy's seed fixes each trial's driver gains, reading offsets and pen placement, so rows
differ only by what drives the hand. Reported per trial, as the paper's real-world tables do:
rotation until the drop (rad), the share of trials reaching 180 and 360 degrees; and ours: time
the pen is held, survival to the end, with 95% intervals, overall, per pen and seen/unseen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from penspin.config import UserFacingError
from penspin.evaluation.stats import mean_ci, rate_ci
from penspin.replay.trajectories import Trajectories
from penspin.replay.trials import REPLAY, RobotEvalConfig, run_on_robot
from penspin.robot.proxy import PENS_BY_NAME


def trial_metrics(rotation: np.ndarray, held: np.ndarray, dropped: np.ndarray,
                  horizon_s: float) -> dict:
    n = len(rotation)
    return {
        "trials": int(n),
        "rotation_rad": mean_ci(rotation),
        "reach_180": rate_ci(int((rotation >= math.pi).sum()), n),
        "reach_360": rate_ci(int((rotation >= 2 * math.pi).sum()), n),
        "time_held_s": mean_ci(held),
        "survival": rate_ci(int((~dropped).sum()), n),
        "horizon_s": horizon_s,
    }


def summarise(raw: dict, pens: np.ndarray, horizon_s: float) -> dict:
    out = trial_metrics(raw["rotation"], raw["held"], raw["dropped"], horizon_s)
    groups = {"seen": [p.name for p in PENS_BY_NAME.values() if p.role == "collect"]}
    groups["unseen"] = [p for p in PENS_BY_NAME if p not in groups["seen"]]
    out["per_pen"] = {}
    for name in sorted(set(pens.tolist())):
        sel = pens == name
        out["per_pen"][name] = trial_metrics(*(raw[k][sel] for k in ("rotation", "held",
                                                                       "dropped")), horizon_s)
    for group, names in groups.items():
        sel = np.isin(pens, names)
        if sel.any():
            out[group] = trial_metrics(*(raw[k][sel] for k in ("rotation", "held", "dropped")),
                                       horizon_s)
    return out


def format_rows(results: list[dict]) -> str:
    """Markdown, one row per policy, laid out like the paper's real-world tables."""
    lines = ["| policy | rotation / trial (rad) | reach 180 deg | reach 360 deg | held (s) | "
             "survival |", "|---|---|---|---|---|---|"]
    for r in results:
        cells = [f"{r[k]['mean']:.2f} [{r[k]['ci95'][0]:.2f}, {r[k]['ci95'][1]:.2f}]"
                 for k in ("rotation_rad", "reach_180", "reach_360", "time_held_s", "survival")]
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> None:
    from penspin.cli_support import resolve
    from penspin.student.policy import load_policy

    cfg = resolve(RobotEvalConfig(), args)
    if cfg is None:
        return
    if not args.trajectories:
        raise UserFacingError("--robot needs --trajectories FILE (from penspin export-replay): "
                              "its start states and pens define the trials")
    torch.set_num_threads(1)
    traj = Trajectories.load(args.trajectories)
    results = []
    for path in args.checkpoint:
        source = REPLAY if path == REPLAY else load_policy(path)
        raw = run_on_robot(source, traj, args.robot, cfg)
        metrics = summarise(raw, raw["pens"], raw["horizon_s"])
        metrics["policy"] = path
        # Per trial, in trial order, so rows can be compared paired on the same trials.
        metrics["per_trial"] = {"rotation_rad": raw["rotation"].tolist(),
                                "time_held_s": raw["held"].tolist(),
                                "dropped": raw["dropped"].tolist(), "pen": raw["pens"].tolist()}
        results.append(metrics)
    print(format_rows(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        data = {"robot": args.robot, "trajectories": args.trajectories,
                "config": dataclasses.asdict(cfg), "results": results}
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.out}")
