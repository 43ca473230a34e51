"""Why did the shipped oracle's training run collapse after ~12 M env steps?

Reads every scalar of a run's TensorBoard directory (resumed segments: a later file replaces the
steps it overlaps), prints window means and the step at which each indicator first leaves its
8-11 M band, and plots aligned panels.

    python scripts/diagnose_oracle_collapse.py checkpoints/oracle-run/tb --gamma 0.99

Derived quantities (the run logs no per-episode lists):
- ``fall_len``: mean length of the episodes that fell, from the window means of episode length L
  and of the fall fraction f, with time-outs at ``--max-len``: (L - (1 - f) * max_len) / f.
- ``hazard``: falls per env step, f / L.
- ``V_gamma``: discounted return of a state under a constant per-step reward r and hazard h,
  r / (1 - gamma * (1 - h)); time-outs are bootstrapped in training, so they do not end it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

WINDOWS = [(2, 5), (5, 8), (8, 11), (11, 13), (13, 15), (15, 17.1)]  # million env steps
ROWS = [  # (label, series key, format)
    ("episode length (steps)", "episode/length", ".0f"),
    ("episode reward", "episode/reward", ".1f"),
    ("fell fraction of episodes", "episode/fell", ".2f"),
    ("mean length of falls (steps)", "fall_len", ".0f"),
    ("falls per 1k env steps", "hazard", ".2f"),
    ("rotation, episode mean (rad/s)", "episode/rotation_speed", ".2f"),
    ("rotation, per step (rad/s)", "env/rotation_speed", ".3f"),
    ("over-speed (spin-1)+ per step", "env/reward/rotate_penalty", ".3f"),
    ("rotate term (clip 0.5) per step", "env/reward/rotate", ".3f"),
    ("pose_diff per step", "env/reward/pose_diff_penalty", ".2f"),
    ("work per step (x1e3)", "work_x1e3", ".2f"),
    ("reward per step", "env/reward/total", ".3f"),
    ("V_gamma from reward and hazard", "V_gamma", ".1f"),
    ("policy/sigma", "policy/sigma", ".3f"),
    ("loss/bounds", "loss/bounds", ".4f"),
    ("policy/kl", "policy/kl", ".4f"),
    ("policy/lr (x1e5)", "lr_x1e5", ".2f"),
    ("loss/critic", "loss/critic", ".4f"),
    ("policy/grad_norm (pre-clip)", "policy/grad_norm", ".1f"),
]
# Indicator, direction of the collapse: onset = first 0.25 M bin from 11 M on that, with the
# next one, lies 3 standard deviations beyond the 8-11 M bins in that direction: beyond their
# mean ("band"), or beyond their extrapolated linear trend ("trend": sigma's steady decline is
# not an onset). The two disagree where 8-11 M itself moved (loss/bounds fell from its 8 M bump).
ONSETS = [
    ("loss/bounds", +1),
    ("env/reward/pose_diff_penalty", -1),
    ("fall_len", -1),
    ("episode/fell", +1),
    ("episode/length", -1),
    ("episode/rotation_speed", +1),
    ("env/reward/rotate_penalty", +1),
    ("env/rotation_speed", +1),
    ("policy/kl", +1),
    ("policy/lr", +1),
    ("loss/critic", +1),
    ("policy/sigma", -1),
]


def load(tb_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag as (steps, values); a later event file overrides the steps it resumes."""
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            events = acc.Scalars(tag)
            steps = np.array([e.step for e in events], dtype=np.int64)
            values = np.array([e.value for e in events], dtype=np.float64)
            if tag in data:
                old_s, old_v = data[tag]
                keep = old_s < steps[0]
                steps, values = np.r_[old_s[keep], steps], np.r_[old_v[keep], values]
            data[tag] = (steps, values)
    return data


def derive(data: dict, gamma: float, max_len: int) -> None:
    """Add the derived series (same steps as episode/length)."""
    steps, length = data["episode/length"]
    fell = np.interp(steps, *data["episode/fell"])
    reward = np.interp(steps, *data["env/reward/total"])
    with np.errstate(divide="ignore", invalid="ignore"):
        data["fall_len"] = (steps, (length - (1 - fell) * max_len) / fell)
        hazard = fell / length
    data["hazard"] = (steps, 1e3 * hazard)
    data["V_gamma"] = (steps, reward / (1 - gamma * (1 - hazard)))
    work_steps, work = data["env/reward/work_penalty"]
    data["work_x1e3"] = (work_steps, 1e3 * work)
    data["lr_x1e5"] = (data["policy/lr"][0], 1e5 * data["policy/lr"][1])


def window_mean(data: dict, key: str, lo: float, hi: float) -> float:
    steps, values = data[key]
    sel = (steps >= lo * 1e6) & (steps < hi * 1e6) & np.isfinite(values)
    return float(values[sel].mean()) if sel.any() else float("nan")


def onset(data: dict, key: str, sign: int, trend: bool, width: float = 0.25) -> float | None:
    x = np.arange(8, 11, width)
    base = np.array([window_mean(data, key, a, a + width) for a in x])
    slope, icept = np.polyfit(x, base, 1) if trend else (0.0, base.mean())
    sd = np.std(base - (slope * x + icept))
    starts = np.arange(11, 17, width)
    means = np.array([window_mean(data, key, a, a + width) for a in starts])
    out = sign * (means - (slope * starts + icept)) > 3 * sd
    for i in range(len(out) - 1):
        if out[i] and out[i + 1]:
            return float(starts[i])
    return None


def smooth(steps: np.ndarray, values: np.ndarray, n: int = 33):
    ok = np.isfinite(values)
    steps, values = steps[ok], values[ok]
    if len(values) < n:
        return steps / 1e6, values
    kernel = np.ones(n) / n
    return steps[n - 1 :] / 1e6, np.convolve(values, kernel, mode="valid")


def plot(data: dict, out: Path) -> None:
    panels = [  # (left series, right series), each (key, label, colour)
        (
            [("episode/length", "episode length (steps)", "C0")],
            [("episode/reward", "episode reward", "C3")],
        ),
        (
            [("episode/fell", "fell fraction", "C1")],
            [("fall_len", "mean length of falls (steps)", "C2")],
        ),
        (
            [
                ("env/rotation_speed", "rotation per step (rad/s)", "C0"),
                ("episode/rotation_speed", "rotation, episode mean (rad/s)", "C9"),
            ],
            [("env/reward/rotate_penalty", "over-speed (spin-1)+ per step", "C3")],
        ),
        ([("policy/sigma", "policy/sigma", "C0")], [("loss/bounds", "loss/bounds (log)", "C3")]),
        ([("policy/kl", "policy/kl", "C0")], [("policy/lr", "policy/lr (log)", "C3")]),
        (
            [("loss/critic", "loss/critic", "C0")],
            [("env/reward/pose_diff_penalty", "pose_diff per step", "C2")],
        ),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.1 * len(panels)), sharex=True)
    for ax, (left, right) in zip(axes, panels, strict=True):
        twin = ax.twinx()
        for axis, series in ((ax, left), (twin, right)):
            for key, label, colour in series:
                axis.plot(*smooth(*data[key]), color=colour, lw=1.2, label=label)
            axis.legend(loc="upper left" if axis is ax else "upper right", fontsize=7)
        if right[0][0] in ("loss/bounds", "policy/lr"):
            twin.set_yscale("log")
        if right[0][0] == "loss/bounds":
            twin.set_ylim(bottom=1e-5)
        if left[0][0] == "loss/critic":
            ax.set_ylim(0, 0.08)
        for x in (12.0,):
            ax.axvline(x, color="k", ls="--", lw=0.7)
    axes[0].set_title(
        "Shipped oracle run (0.1 M-step running means; dashed: shipped checkpoint)", fontsize=9
    )
    axes[-1].set_xlabel("env steps (M)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tb_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/oracle_collapse.png"))
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--max-len", type=int, default=400, help="episode length at time-out")
    args = parser.parse_args()

    data = load(args.tb_dir)
    derive(data, args.gamma, args.max_len)
    head = " | ".join(f"{a:g}-{b:g} M" for a, b in WINDOWS)
    print(f"| window | {head} |\n|---|" + "---|" * len(WINDOWS))
    for label, key, fmt in ROWS:
        cells = " | ".join(format(window_mean(data, key, a, b), fmt) for a, b in WINDOWS)
        print(f"| {label} | {cells} |")
    print("\nOnset (M env steps): first 0.25 M bin >= 11 M, with the next, 3 sd beyond 8-11 M")
    print(f"  {'indicator':30s} {'dir':4s} {'band':>6s} {'trend':>6s}")
    for key, sign in sorted(ONSETS, key=lambda ks: onset(data, *ks, trend=False) or 99):
        cells = [onset(data, key, sign, trend) for trend in (False, True)]
        cells = " ".join(f"{'never' if c is None else f'{c:.2f}':>6s}" for c in cells)
        print(f"  {key:30s} {'up' if sign > 0 else 'down':4s} {cells}")
    plot(data, args.out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
