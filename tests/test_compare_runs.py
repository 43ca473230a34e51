"""scripts/compare_runs.py: curves of several runs, and the binned CSV that keeps them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[1]


def _run(path: Path, slope: float) -> Path:
    with SummaryWriter(str(path / "tb")) as writer:
        for k in range(10):  # one point every 0.1 M steps, 0 to 0.9 M
            writer.add_scalar("episode/length", slope * k, k * 100_000)
    return path


def test_binned_csv_holds_each_runs_means_per_window(tmp_path):
    a, b = _run(tmp_path / "a", 1.0), _run(tmp_path / "b", 2.0)
    out = tmp_path / "c.csv"
    script = str(ROOT / "scripts" / "compare_runs.py")
    proc = subprocess.run([sys.executable, script, str(a), str(b),
                           "--labels", "A", "B", "--tags", "episode/length", "--window", "0.5",
                           "--out", str(tmp_path / "c.png"), "--csv", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["run"], r["from_M"], r["to_M"], r["points"]) for r in rows] == [
        ("A", "0", "0.5", "5"), ("A", "0.5", "1", "5"), ("B", "0", "0.5", "5"),
        ("B", "0.5", "1", "5")]
    assert [float(r["mean"]) for r in rows] == [2.0, 7.0, 4.0, 14.0]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_run_comes_back_from_its_binned_csv(tmp_path):
    first = tmp_path / "first.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"),
                    str(_run(tmp_path / "a", 1.0)), "--labels", "A", "--tags", "episode/length",
                    "--window", "0.5", "--out", str(tmp_path / "a.png"), "--csv", str(first)],
                   check=True, capture_output=True, timeout=120)
    again = tmp_path / "again.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"),
                           f"{first}#A", str(_run(tmp_path / "b", 2.0)), "--labels", "A", "B",
                           "--tags", "episode/length", "--window", "0.5",
                           "--out", str(tmp_path / "b.png"), "--csv", str(again)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [(r["run"], r["from_M"], float(r["mean"])) for r in csv.DictReader(again.open())]
    assert rows == [("A", "0", 2.0), ("A", "0.5", 7.0), ("B", "0", 4.0), ("B", "0.5", 14.0)]
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"), f"{first}#Z",
                          "--out", str(tmp_path / "z.png")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "no run labelled 'Z'" in bad.stderr


def test_hours_put_training_wall_clock_on_the_x_axis(tmp_path):
    run = tmp_path / "h"
    with SummaryWriter(str(run / "tb")) as writer:  # a point every 2 minutes, a stop of 1 h
        for k in range(10):
            wall = 1e9 + k * 120 + (3600 if k >= 5 else 0)
            writer.add_scalar("episode/length", float(k), k * 100_000, walltime=wall)
    script = str(ROOT / "scripts" / "compare_runs.py")
    proc = subprocess.run([sys.executable, script, str(run), "--tags", "episode/length",
                           "--hours", "--until", "0.15", "--window", "0.05",
                           "--out", str(tmp_path / "h.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the stop does not count: point 5 comes at 8 minutes of training, like point 4
    assert "last    5.000 at 0.13 h" in proc.stdout
    assert "mean of last 0.05 h    4.000" in proc.stdout
    bad = subprocess.run([sys.executable, script, str(run), "--hours", "--csv",
                          str(tmp_path / "x.csv"), "--out", str(tmp_path / "x.png")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--hours needs run folders" in bad.stderr


def test_a_run_record_reads_back_from_its_curves_csv(tmp_path):
    from penspin.viz.curves import read_scalars, write_binned_csv

    record = tmp_path / "record"
    write_binned_csv(_run(tmp_path / "a", 1.0), record / "curves.csv", bin_steps=200_000)
    back = read_scalars(record)  # no events there: the CSV stands in
    assert [(s, v) for _, s, v in back["episode/length"]] == [
        (0.0, 0.5), (2e5, 2.5), (4e5, 4.5), (6e5, 6.5), (8e5, 8.5)]
