"""The tracked tree stays lean: code, docs, small figures and the checkpoints users run.

Budget: 20 MB in all (documented in docs/design.md, "The tracked tree"), no TensorBoard events
and no full-state resume files (runs keep `curves.csv`).
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUDGET_BYTES = 20_000_000


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_the_tracked_tree_fits_its_budget():
    files = [p for p in _tracked() if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    biggest = sorted(files, key=lambda p: p.stat().st_size)[-3:]
    assert total <= BUDGET_BYTES, (f"tracked tree is {total / 1e6:.1f} MB > "
                                   f"{BUDGET_BYTES / 1e6:.0f} MB; largest: {biggest}")


def test_no_training_logs_or_resume_states_are_tracked():
    bad = [str(p.relative_to(ROOT)) for p in _tracked()
           if "tfevents" in p.name or p.name.endswith("-full.pt") or p.name == "full.pt"]
    assert not bad, f"keep these out of git (curves.csv holds a run's curves): {bad}"
