"""The state interface every backend shares: torch views of the arrays the backend steps.

``qpos`` [num_envs, nq], ``qvel`` [num_envs, nv], ``time`` [num_envs] and ``sensordata``
[num_envs, nsensordata] (the last substep's, computed before its integration), plus the inputs
``ctrl`` [num_envs, substeps, nu], ``qfrc`` [num_envs, substeps, nv] and the flags ``diverged``
[num_envs], live on the backend's ``torch_device`` in its ``dtype``; writing into them writes the
physics. The task reads any backend the same way and never copies to the host to step.
"""

from __future__ import annotations

import torch


class TensorState:
    """``set_qpos_qvel`` for a backend that defines the views above, ``torch_device`` and
    ``dtype``. Writes take torch tensors (or anything ``torch.as_tensor`` reads)."""

    torch_device: torch.device
    dtype: torch.dtype
    qpos: torch.Tensor
    qvel: torch.Tensor
    time: torch.Tensor
    sensordata: torch.Tensor

    def _rows(self, env_ids) -> torch.Tensor:
        return torch.as_tensor(env_ids, dtype=torch.long, device=self.torch_device)

    def _tensor(self, values) -> torch.Tensor:
        return torch.as_tensor(values, dtype=self.dtype, device=self.torch_device)

    def set_qpos_qvel(self, env_ids, qpos, qvel) -> None:
        rows = self._rows(env_ids)
        self.qpos[rows] = self._tensor(qpos)
        self.qvel[rows] = self._tensor(qvel)
        self.time[rows] = 0.0
