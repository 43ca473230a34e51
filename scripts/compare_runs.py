"""Learning curves of several runs side by side, one panel per logged tag, against env steps.

Reads each run's TensorBoard events (``penspin.viz.curves.read_scalars``, so resumed runs are
stitched) and prints, per run and tag, the best value, the last one, and the mean over the last
``--window`` M steps: the numbers the docs quote beside the plot. ``--csv`` also writes every
curve as means over consecutive ``--window`` M-step bins, a small file that keeps the curves
when the runs' folders are gone. A run given as ``FILE.csv#LABEL`` is read back from such a
CSV (that label's bin means, placed at the bins' centres), so a run whose folder is gone can
still be plotted beside the others. ``--hours`` puts training wall-clock hours (gaps while a run
was stopped left out) on the x axis instead, for "how good after an hour" questions; ``--until``
and ``--window`` are then in hours.

    python scripts/compare_runs.py runs/a runs/b --labels A B \
        --tags eval/time_to_fall_s eval/survival --out docs/student_curves.png
    python scripts/compare_runs.py runs/a "docs/results/curves.csv#old run" --out both.png
    python scripts/compare_runs.py runs/a runs/b --hours --until 1 --out first_hour.png
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from penspin.viz.curves import read_scalars, training_hours  # noqa: E402


def read_run(run: str) -> dict[str, list[tuple[float, float, float]]]:
    """A run's ``{tag: [(wall_time, step, value), ...]}``: its TensorBoard events, or the bin
    means of ``FILE.csv#LABEL`` (wall time 0)."""
    if "#" not in run:
        return read_scalars(run)
    path, label = run.split("#", 1)
    scalars: dict[str, list[tuple[float, float, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["run"] == label:
                centre = (float(row["from_M"]) + float(row["to_M"])) / 2 * 1e6
                scalars.setdefault(row["tag"], []).append((0.0, centre, float(row["mean"])))
    if not scalars:
        raise SystemExit(f"{path}: no run labelled {label!r}")
    return scalars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, or FILE.csv#LABEL")
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--tags", nargs="+", default=["episode/reward", "episode/length"])
    parser.add_argument("--window", type=float, default=0.2, help="M env steps for the last mean")
    parser.add_argument("--until", type=float, default=float("inf"),
                        help="M env steps: cut every run there, so budgets match")
    parser.add_argument("--hours", action="store_true",
                        help="training wall-clock hours on the x axis (and for --until, --window)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average points in the plot")
    parser.add_argument("--title", default="")
    parser.add_argument("--csv", help="write the binned curves here")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    labels = args.labels or [Path(r).name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")
    if args.hours and (args.csv or any("#" in r for r in args.runs)):
        raise SystemExit("--hours needs run folders (a binned CSV keeps no wall clock), no --csv")
    unit = "h" if args.hours else "M"
    fig, axes = plt.subplots(1, len(args.tags), figsize=(5.5 * len(args.tags), 4), squeeze=False)
    binned = []
    for run, label in zip(args.runs, labels, strict=True):
        scalars = read_run(run)
        for ax, tag in zip(axes[0], args.tags, strict=True):
            if tag not in scalars:
                raise SystemExit(f"{run}: no {tag} logged")
            xs = (training_hours(scalars[tag]) if args.hours
                  else [s / 1e6 for _, s, _ in scalars[tag]])
            rows = [(x, v) for x, (_, _, v) in zip(xs, scalars[tag], strict=True)
                    if x <= args.until]
            steps, values = [s for s, _ in rows], [v for _, v in rows]
            k = max(1, args.smooth)
            shown = [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1])
                     for i in range(len(values))]
            ax.plot(steps, shown, marker="o" if len(steps) < 40 else None, label=label)
            tail = [v for s, v in zip(steps, values, strict=True) if s > steps[-1] - args.window]
            bins: dict[int, list[float]] = {}
            for s, v in rows:
                bins.setdefault(math.floor(s / args.window), []).append(v)
            binned += [(label, tag, f"{b * args.window:g}", f"{(b + 1) * args.window:g}",
                        f"{sum(v) / len(v):.6g}", len(v)) for b, v in sorted(bins.items())]
            best = max(values)
            print(f"{label:24s} {tag:24s} best {best:8.3f} at {steps[values.index(best)]:.2f}"
                  f" {unit}, last {values[-1]:8.3f} at {steps[-1]:.2f} {unit},"
                  f" mean of last {args.window} {unit} {sum(tail) / len(tail):8.3f}")
    for ax, tag in zip(axes[0], args.tags, strict=True):
        ax.set(xlabel="training wall-clock hours" if args.hours else "env steps (M)", ylabel=tag)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "tag", "from_M", "to_M", "mean", "points"])
            writer.writerows(binned)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
