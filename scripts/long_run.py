"""The shipped oracle's long run, stitched across the runs it was resumed through; collapse check.

Issue 13's target: the running-mean episode reward never stays more than 20% below its best so
far for more than 2 M env steps. Each segment is ``RUN_DIR`` or ``RUN_DIR:UNTIL`` (UNTIL in env
steps: where the next segment resumed from that run's save); a segment contributes the steps
after the previous one's end. Prints the check, writes the stitched curves as a plot and as
0.1 M-step bin means (CSV), so the record outlives the runs' event files.

    python scripts/long_run.py checkpoints/oracle-run:11968512 \
        checkpoints/oracle-arcsine-run:13516800 checkpoints/oracle-arcsine-lr1e-5-run \
        --out docs/oracle_long_run.png --csv docs/results/oracle_long_run.csv
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from penspin.viz.curves import read_scalars  # noqa: E402

TAGS = ("episode/reward", "episode/length", "episode/rotation_speed")
BIN = 100_000


def stitch(segments: list[str]) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    """``{tag: [(step, value), ...]}`` along the segments, and the steps where each one ends."""
    curves: dict[str, list[tuple[float, float]]] = {t: [] for t in TAGS}
    ends, start = [], -math.inf
    for seg in segments:
        run, _, until = seg.partition(":")
        end = float(until) if until else math.inf
        scalars = read_scalars(run)
        for tag in TAGS:
            curves[tag] += [(s, v) for _, s, v in scalars[tag] if start < s <= end]
        start = max(s for s, _ in curves[TAGS[0]])
        ends.append(start)
    return curves, ends


def longest_dip(rows: list[tuple[float, float]], fraction: float) -> tuple[float, float, float]:
    """Longest stretch (env steps) with the value below ``fraction`` of its best so far:
    (length, first step, last step)."""
    best, dip_start, longest = -math.inf, None, (0.0, math.nan, math.nan)
    for step, value in rows:
        if value < fraction * best:
            dip_start = step if dip_start is None else dip_start
            if step - dip_start > longest[0]:
                longest = (step - dip_start, dip_start, step)
        else:
            dip_start = None
        best = max(best, value)
    return longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("segments", nargs="+", help="RUN_DIR or RUN_DIR:UNTIL_STEP, in order")
    parser.add_argument("--fraction", type=float, default=0.8)
    parser.add_argument("--out", default="docs/oracle_long_run.png")
    parser.add_argument("--csv", default="")
    args = parser.parse_args()
    curves, ends = stitch(args.segments)
    reward = curves["episode/reward"]
    best_step, best = max(reward, key=lambda r: r[1])
    length, first, last = longest_dip(reward, args.fraction)
    print(f"{len(reward)} points to {reward[-1][0] / 1e6:.2f} M steps; segments end at "
          + ", ".join(f"{e / 1e6:.2f} M" for e in ends))
    print(f"best running-mean episode reward {best:.1f} at {best_step / 1e6:.2f} M; "
          f"last {reward[-1][1]:.1f}")
    print(f"longest stretch below {args.fraction:.0%} of the best so far: {length / 1e6:.2f} M "
          f"steps ({first / 1e6:.2f}-{last / 1e6:.2f} M)" if length else
          f"never below {args.fraction:.0%} of the best so far after it was reached")

    fig, axes = plt.subplots(len(TAGS), 1, figsize=(9, 7), sharex=True)
    for ax, tag in zip(axes, TAGS, strict=True):
        ax.plot([s / 1e6 for s, _ in curves[tag]], [v for _, v in curves[tag]], lw=0.8)
        for e in ends[:-1]:
            ax.axvline(e / 1e6, color="grey", ls=":", lw=0.8)
        ax.set_ylabel(tag, fontsize=8)
        ax.grid(alpha=0.3)
    running_best = []
    for _, v in reward:
        running_best.append(max(v, running_best[-1] if running_best else -math.inf))
    axes[0].plot([s / 1e6 for s, _ in reward], [args.fraction * b for b in running_best],
                 color="red", lw=0.8, label=f"{args.fraction:.0%} of the best so far")
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("env steps (M); dotted: where the run was resumed with new settings")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["bin_start_steps", *TAGS])
            bins: dict[int, dict[str, list[float]]] = {}
            for tag in TAGS:
                for s, v in curves[tag]:
                    bins.setdefault(int(s // BIN), {}).setdefault(tag, []).append(v)
            for b in sorted(bins):
                means = [sum(v) / len(v) if (v := bins[b].get(t)) else math.nan for t in TAGS]
                w.writerow([b * BIN, *(f"{m:.4f}" for m in means)])
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
