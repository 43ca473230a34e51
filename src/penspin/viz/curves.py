"""``penspin plot``: a run's learning curves (episode length, rotation, reward) as one PNG, and
every logged scalar binned by env steps as a CSV (the run record kept in git instead of the
TensorBoard events, which are large and stay out of the tree).

Reads the run's TensorBoard events, so it works on a run that is still training, and plots each
curve against env steps with wall-clock hours on a second axis: on a CPU, "how long until it
spins" is the question that matters.
"""

from __future__ import annotations

from pathlib import Path

CURVES = (
    ("episode/length", "episode length (s)", 0.05),
    ("episode/rotation_speed", "episode rotation speed +z (rad/s)", 1.0),
    ("env/reward/rotate", "rotation reward per step (clipped rad/s)", 1.0),
    ("episode/reward", "episode reward", 1.0),
)


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[float, float, float]]]:
    """``{tag: [(wall_time, step, value), ...]}`` from every event file under ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    if not files and (run_dir / "curves.csv").exists():
        return _read_binned_csv(run_dir / "curves.csv")
    if not files:
        raise FileNotFoundError(f"no TensorBoard events (or curves.csv) under {run_dir}")
    out: dict[str, list[tuple[float, float, float]]] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    for tag in out:
        # A resumed run repeats steps it had already logged before the kill: keep the latest.
        by_step = {}
        for wall, step, value in sorted(out[tag]):
            by_step[step] = (wall, step, value)
        out[tag] = sorted(by_step.values(), key=lambda r: r[1])
    return out


def _read_binned_csv(path: Path) -> dict[str, list[tuple[float, float, float]]]:
    """A run record's curves (``write_binned_csv``) as scalars: one point per bin."""
    import csv
    import math

    with path.open() as f:
        rows = list(csv.DictReader(f))
    tags = [k for k in (rows[0] if rows else {}) if k not in ("bin_start_steps", "hours")]
    return {t: [(float(r["hours"]) * 3600, float(r["bin_start_steps"]), float(r[t]))
                for r in rows if not math.isnan(float(r[t]))] for t in tags}


def training_hours(rows: list[tuple[float, float, float]]) -> list[float]:
    """Wall-clock hours of training at each row, not counting gaps while the run was stopped."""
    hours, total, prev = [], 0.0, None
    for wall, _, _ in rows:
        if prev is not None:
            gap = wall - prev
            total += gap if gap < 300 else 0.0
        hours.append(total / 3600)
        prev = wall
    return hours


def plot_run(run_dir: str | Path, out: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(run_dir)
    present = [c for c in CURVES if c[0] in scalars]
    if not present:
        raise FileNotFoundError(f"{run_dir} has none of the curves {[c[0] for c in CURVES]}")
    fig, axes = plt.subplots(len(present), 1, figsize=(8, 2.6 * len(present)), sharex=True)
    axes = [axes] if len(present) == 1 else list(axes)
    for ax, (tag, label, scale) in zip(axes, present, strict=True):
        rows = scalars[tag]
        steps = [r[1] for r in rows]
        ax.plot(steps, [r[2] * scale for r in rows], lw=1.2)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("env steps")
    rows = scalars[present[0][0]]
    hours = training_hours(rows)
    top = axes[0].secondary_xaxis(
        "top", functions=(lambda s, r=rows, h=hours: _interp(s, [x[1] for x in r], h),
                          lambda t, r=rows, h=hours: _interp(t, h, [x[1] for x in r])))
    top.set_xlabel("training wall-clock hours")
    fig.suptitle(title or str(run_dir), fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_binned_csv(run_dir: str | Path, out: str | Path, bin_steps: float = 1e5) -> Path:
    """Mean of every scalar per ``bin_steps`` env steps, with training hours at the bin's end."""
    import csv
    import math

    scalars = read_scalars(run_dir)
    tags = sorted(scalars)
    clock = max(scalars.values(), key=len)  # the most often logged curve carries the wall clock
    hours = dict(zip((r[1] for r in clock), training_hours(clock), strict=True))
    bins: dict[int, dict[str, list[float]]] = {}
    for tag in tags:
        for _, step, value in scalars[tag]:
            bins.setdefault(int(step // bin_steps), {}).setdefault(tag, []).append(value)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["bin_start_steps", "hours", *tags])
        for b in sorted(bins):
            end = [h for s, h in hours.items() if s < (b + 1) * bin_steps]
            means = [sum(v) / len(v) if (v := bins[b].get(t)) else math.nan for t in tags]
            writer.writerow([f"{b * bin_steps:g}", f"{max(end, default=0.0):.4f}",
                             *(f"{m:.6g}" for m in means)])
    return out


def _interp(x, xs, ys):
    import numpy as np

    return np.interp(x, xs, ys)


def main(args) -> None:
    if args.csv:
        print(f"wrote {write_binned_csv(args.run_dir, args.csv, args.bin_steps)}")
    if args.out:
        print(f"wrote {plot_run(args.run_dir, args.out, args.title)}")
