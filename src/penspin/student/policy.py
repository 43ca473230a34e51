"""Load any trained policy checkpoint as ``obs dict -> actions`` plus the task it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from penspin.config import from_dict
from penspin.rl.checkpoint import CheckpointError, load_checkpoint, model_from_payload
from penspin.rl.networks import OracleActorCritic
from penspin.student.network import StudentActorCritic
from penspin.task.config import TaskConfig, as_evaluated


@dataclass
class Policy:
    """A deterministic policy (clamped mean action) and the task settings it expects."""

    kind: str
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    task: TaskConfig
    path: str
    model: torch.nn.Module


def evaluated_task(payload: dict) -> TaskConfig:
    """The task a checkpoint was trained on, as evaluated (``as_evaluated``); the default task
    for checkpoints without a config."""
    env_cfg = payload.get("config", {}).get("env")
    return as_evaluated(from_dict(TaskConfig, env_cfg)) if env_cfg is not None else TaskConfig()


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    payload = load_checkpoint(path)
    kind = payload["kind"]
    task = evaluated_task(payload)
    classes = {"oracle": OracleActorCritic, "student": StudentActorCritic}
    if kind not in classes:
        raise CheckpointError(f"{path}: don't know how to run a {kind!r} checkpoint as a policy")
    model = model_from_payload(classes[kind], payload).to(device).eval()
    # Both kinds act with clamp(mu); a student computes its fingertips by FK inside.
    return Policy(kind, torch.no_grad()(model.act_inference), task, str(path), model)
