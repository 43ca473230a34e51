"""Every config key a command takes has a one-line doc, and ``--keys`` prints it."""

import pytest

from penspin.cli import main
from penspin.config import key_docs
from penspin.task.config import TaskConfig

COMMANDS = [["train-oracle"], ["train-student"], ["train-student-rl"], ["finetune"],
            ["export-replay"], ["replay"], ["eval"], ["eval", "--robot", "proxy"], ["render"],
            ["excite"], ["calibrate"], ["sim-hand"], ["grasps"], ["view"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_keys_prints_a_doc_for_every_key(command, capsys):
    main([*command, "--keys"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "=" in line]
    assert len(lines) > 3
    bare = [line for line in lines if "  # " not in line or not line.split("  # ", 1)[1].strip()]
    assert not bare, f"{' '.join(command)}: keys without a doc: {bare}"


def test_docs_come_from_the_fields_source_comments():
    docs = key_docs(TaskConfig())
    assert docs["substeps"] == "physics steps per control step"
    # A doc written as comment lines above the field joins them into one line.
    assert docs["randomization.latency_substeps"].startswith("(low, high) physics substeps")
    assert docs["randomization.friction_dist"].startswith("uniform (PenSpin) or arcsine")
