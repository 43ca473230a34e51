"""Closed-loop learning curves of student runs: held-out time to fall against oracle samples.

Reads ``eval/time_to_fall_s`` (and ``eval/survival``) from each run's TensorBoard folder, as
``penspin train-student`` logs them every ``train.eval_every`` iterations, and plots them.

    python docs/plot_student_curves.py runs/a runs/b --labels A B --out docs/student_curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def curve(run: Path, tag: str) -> tuple[list[float], list[float]]:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        raise SystemExit(f"{run}: no {tag} logged (was train.eval_every 0?)")
    events = acc.Scalars(tag)
    return [e.step / 1e6 for e in events], [e.value for e in events]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+")
    parser.add_argument("--out", default="docs/student_curves.png")
    args = parser.parse_args()
    labels = args.labels or [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in zip(args.runs, labels, strict=True):
        steps, held = curve(run, "eval/time_to_fall_s")
        ax_t.plot(steps, held, marker="o", label=label)
        steps, surv = curve(run, "eval/survival")
        ax_s.plot(steps, [100 * s for s in surv], marker="o", label=label)
        print(f"{label}: best {max(held):.2f} s at {steps[held.index(max(held))]:.2f} M, "
              f"last {held[-1]:.2f} s at {steps[-1]:.2f} M")
    ax_t.set(xlabel="oracle samples (M)", ylabel="time to fall (s), held-out episodes",
             title="closed loop, 64 held-out 20 s episodes")
    ax_s.set(xlabel="oracle samples (M)", ylabel="survive 20 s (%)")
    for ax in (ax_t, ax_s):
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
