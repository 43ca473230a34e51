"""The host-side state layout every backend shares, so the task reads any backend the same way."""

from __future__ import annotations

import numpy as np


class HostState:
    """Views of ``state`` [num_envs, 1 + nq + nv] (time, qpos, qvel) and ``sensor_out``
    [num_envs, substeps, nsensordata], which a backend keeps on the host and defines, with the
    ``_qpos`` / ``_qvel`` column slices."""

    state: np.ndarray
    sensor_out: np.ndarray
    _qpos: slice
    _qvel: slice

    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, self._qpos]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, self._qvel]

    @property
    def time(self) -> np.ndarray:
        return self.state[:, 0]

    @property
    def sensordata(self) -> np.ndarray:
        """Sensors of the last substep (computed before its integration)."""
        return self.sensor_out[:, -1]

    def set_qpos_qvel(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        self.state[env_ids, self._qpos] = qpos
        self.state[env_ids, self._qvel] = qvel
        self.state[env_ids, 0] = 0.0
        # Everything past qvel (actuator activations, plugin state) restarts from zero.
        self.state[env_ids, self._qvel.stop:] = 0.0
