"""Load any trained policy checkpoint as ``obs dict -> actions`` plus the task it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from penspin.config import from_dict
from penspin.learning.checkpoint import CheckpointError, load_checkpoint, load_state_checked
from penspin.learning.networks import OracleActorCritic
from penspin.task.config import TaskConfig


@dataclass
class Policy:
    """A deterministic policy (clamped mean action) and the task settings it expects."""

    kind: str
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    task: TaskConfig
    path: str


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    payload = load_checkpoint(path)
    kind = payload["kind"]
    env_cfg = payload.get("config", {}).get("env")
    task = from_dict(TaskConfig, env_cfg) if env_cfg is not None else TaskConfig()
    if kind == "oracle":
        model = OracleActorCritic(**payload["model_args"])
        load_state_checked(model, payload["model"])
        model = model.to(device).eval()

        @torch.no_grad()
        def act(obs: dict[str, torch.Tensor]) -> torch.Tensor:
            return model.act_inference(obs)

        return Policy(kind, act, task, str(path))
    if kind == "student":
        from penspin.learning.student import StudentActorCritic

        student = StudentActorCritic(**payload["model_args"])
        load_state_checked(student, payload["model"])
        student = student.to(device).eval()

        @torch.no_grad()
        def act_student(obs: dict[str, torch.Tensor]) -> torch.Tensor:
            return student.act_inference(obs)  # FK of the obs' newest noisy q inside

        return Policy(kind, act_student, task, str(path))
    raise CheckpointError(f"{path}: don't know how to run a {kind!r} checkpoint as a policy")
