"""The step-4 table of docs/real.md from one ``penspin eval --robot proxy --out`` file.

Every row is a policy (or the mean, trial by trial, of several finetune seeds of one path) on the
same trials; differences to the starting student and to open-loop replay are paired per trial,
with 95% bootstrap intervals over trials. Usage:

    python scripts/step4_table.py docs/results/step4_rows.json docs/results/step4_eval*.json
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

BOOTSTRAP = 10_000


def paired(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b and its 95% bootstrap interval, resampling trials."""
    d = a - b
    idx = np.random.default_rng(seed).integers(0, len(d), (BOOTSTRAP, len(d)))
    boots = d[idx].mean(1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    idx = np.random.default_rng(1).integers(0, len(x), (BOOTSTRAP, len(x)))
    boots = x[idx].mean(1)
    return float(x.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def fmt(m: tuple[float, float, float], sign: bool = False) -> str:
    v = f"{m[0]:+.2f}" if sign else f"{m[0]:.2f}"
    return f"{v} [{m[1]:.2f}, {m[2]:.2f}]"


def main(rows_path: str, *eval_paths: str) -> None:
    results = {r["policy"]: r["per_trial"] for path in eval_paths
               for r in json.loads(open(path).read())["results"]}
    spec = json.loads(open(rows_path).read())
    pens = np.array(results[spec["replay"]]["pen"])
    seen = np.isin(pens, spec["seen_pens"])

    def rotation(paths: list[str]) -> np.ndarray:
        for p in paths:
            if results[p]["pen"] != results[paths[0]]["pen"]:
                raise SystemExit(f"{p} ran different trials")
        return np.mean([results[p]["rotation_rad"] for p in paths], 0)

    replay = rotation([spec["replay"]])
    print("| policy | seeds | rotation / trial (rad) | reach 180 deg | seen pens | unseen pens "
          "| vs start (paired) | vs replay (paired) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in spec["rows"]:
        missing = [p for p in row["checkpoints"] + [row.get("start") or spec["replay"]]
                   if p not in results]
        if missing:
            print(f"| {row['label']} | not evaluated: {', '.join(missing)} |")
            continue
        rot = rotation(row["checkpoints"])
        reach = np.mean([np.array(results[p]["rotation_rad"]) >= math.pi
                         for p in row["checkpoints"]], 0)
        start = fmt(paired(rot, rotation([row["start"]])), True) if row.get("start") else "-"
        vs_replay = fmt(paired(rot, replay), True) if row["checkpoints"] != [spec["replay"]] \
            else "-"
        print(f"| {row['label']} | {len(row['checkpoints'])} | {fmt(mean_ci(rot))} | "
              f"{reach.mean():.2f} | {rot[seen].mean():.2f} | {rot[~seen].mean():.2f} | "
              f"{start} | {vs_replay} |")

    print("\nPer seed (rad / trial; `=start`: best.pt is the starting student):")
    for row in spec["rows"]:
        paths = row["checkpoints"]
        if len(paths) > 1 and all(p in results for p in paths + [row["start"]]):
            start = np.array(results[row["start"]]["rotation_rad"])
            vals = [f"{np.mean(results[p]['rotation_rad']):.2f}"
                    + ("=start" if np.array_equal(results[p]["rotation_rad"], start) else "")
                    for p in paths]
            print(f"- {row['label']}: {' / '.join(vals)}")
    if spec.get("contrasts"):
        print("\n| paired difference (rad / trial) | mean [95% interval] |\n|---|---|")
        for c in spec["contrasts"]:
            if all(p in results for p in c["a"] + c["b"]):
                print(f"| {c['label']} | {fmt(paired(rotation(c['a']), rotation(c['b'])), True)} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
