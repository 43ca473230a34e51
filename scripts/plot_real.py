"""Plot docs/real_finetune_curve.png from docs/results/real_proxy.json (penspin eval --robot)."""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/real_proxy.json")
out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/real_finetune_curve.png")
rows = {r["policy"]: r for r in json.loads(src.read_text())["results"]}
demos = {0: "checkpoints/student-dart.pt", 5: "runs/ftd-5/best.pt", 15: "runs/ftd-15/best.pt",
         45: "runs/ftd-45/best.pt"}
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, key, label in ((axes[0], "rotation_rad", "rotation per trial (rad)"),
                       (axes[1], "reach_180", "share reaching 180 deg")):
    xs = sorted(demos)
    mean = [rows[demos[x]][key]["mean"] for x in xs]
    lo = [rows[demos[x]][key]["ci95"][0] for x in xs]
    hi = [rows[demos[x]][key]["ci95"][1] for x in xs]
    ax.plot(xs, mean, "o-", label="pretrained + finetuned (0 = only pretrain)")
    ax.fill_between(xs, lo, hi, alpha=0.2)
    mix = rows.get("runs/ftd-45-sim/best.pt")
    if mix is not None:
        ax.errorbar([45], [mix[key]["mean"]], yerr=[[mix[key]["mean"] - mix[key]["ci95"][0]],
                    [mix[key]["ci95"][1] - mix[key]["mean"]]], fmt="*", ms=10, capsize=3,
                    label="finetuned on 45 + simulated oracle data")
    for name, style in (("replay", "--"), ("runs/ft-scratch-45/best.pt", ":")):
        if name in rows:
            ax.axhline(rows[name][key]["mean"], ls=style, color="gray",
                       label="open-loop replay" if name == "replay" else "no pretrain (45)")
    ax.set_xlabel("successful replays finetuned on")
    ax.set_ylabel(label)
    ax.set_xticks(xs)
axes[0].legend(fontsize=7)
fig.suptitle("Finetuning on proxy-real replays (120 trials per point, 95% intervals)")
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
