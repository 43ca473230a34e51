"""Batched CPU physics: every env's substeps run in C on a thread pool, without the GIL.

One ``MjModel`` per env (so pen size, mass, friction and PD gains can differ per env) and one
``MjData`` per thread; ``mujoco.rollout`` steps all envs for one control step in a single call.
``mujoco.rollout`` reads and writes host numpy arrays (``state``, ``control``, ``sensor_out``);
the task sees them as zero-copy float64 torch views (``qpos``, ``ctrl``, ...; see
:mod:`penspin.sim.tensor_state`) and never loops over envs.
"""

from __future__ import annotations

import mujoco
import numpy as np
import torch
from mujoco import rollout

from penspin.sim import scene
from penspin.sim.model_params import PerEnvParams, Write
from penspin.sim.tensor_state import TensorState

_CONTROL_SPEC = int(mujoco.mjtState.mjSTATE_CTRL) | int(mujoco.mjtState.mjSTATE_QFRC_APPLIED)
_STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Divergent envs are detected (their time restarts) and handled by the task, so MuJoCo's
# per-event console warning is noise.
mujoco.set_mju_user_warning(lambda _msg: None)


class CpuBackend(TensorState, PerEnvParams):
    """Holds the physics state of ``num_envs`` envs and steps them ``substeps`` at a time."""

    def __init__(self, num_envs: int, substeps: int = 10, nthread: int = 2,
                 timestep: float = 0.005):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if nthread < 1:
            raise ValueError(f"nthread must be >= 1, got {nthread}")
        self.num_envs = num_envs
        self.substeps = substeps
        self.nthread = nthread
        self.models = [scene.load_model() for _ in range(num_envs)]
        for m in self.models:
            m.opt.timestep = timestep
        self.model = self.models[0]
        self.layout = scene.layout(self.model)
        self.datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self._probe = mujoco.MjData(self.model)
        self.nstate = mujoco.mj_stateSize(self.model, _STATE_SPEC)
        nq, nv, nu = self.model.nq, self.model.nv, self.model.nu
        self._qpos = slice(1, 1 + nq)
        self._extra = slice(1 + nq + nv, None)  # past qvel: activations, plugin state
        data0 = mujoco.MjData(self.model)
        init = np.empty(self.nstate)
        mujoco.mj_getState(self.model, data0, init, _STATE_SPEC)
        self.state = np.tile(init, (num_envs, 1))
        self.control = np.zeros((num_envs, substeps, nu + nv))
        self.state_out = np.empty((num_envs, substeps, self.nstate))
        self.sensor_out = np.empty((num_envs, substeps, self.model.nsensordata))
        self._runner = rollout.Rollout(nthread=nthread) if nthread > 1 else None

        self.torch_device, self.dtype = torch.device("cpu"), torch.float64
        self._state = torch.from_numpy(self.state)
        self.time = self._state[:, 0]
        self.qpos = self._state[:, self._qpos]
        self.qvel = self._state[:, 1 + nq:1 + nq + nv]
        control = torch.from_numpy(self.control)
        self.ctrl = control[:, :, :nu]
        self.qfrc = control[:, :, nu:]
        self.sensordata = torch.from_numpy(self.sensor_out)[:, -1]
        self.diverged = torch.zeros(num_envs, dtype=torch.bool)

    # Stepping ---------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance every env by ``substeps`` physics steps using ``self.ctrl`` / ``self.qfrc``.

        Envs whose solver diverged are reset by MuJoCo (time restarts at 0); they are flagged in
        ``self.diverged`` so the task terminates them instead of learning from the reset state.
        """
        t_expected = self.state[:, 0] + self.substeps * self.model.opt.timestep
        kwargs = dict(control_spec=_CONTROL_SPEC, skip_checks=True, nstep=self.substeps,
                      state=self.state_out, sensordata=self.sensor_out)
        if self._runner is None:
            rollout.rollout(self.models, self.datas, self.state, self.control, **kwargs)
        else:
            self._runner.rollout(self.models, self.datas, self.state, self.control, **kwargs)
        self.state[:] = self.state_out[:, -1]
        self.diverged = torch.from_numpy(np.abs(self.state[:, 0] - t_expected) > 1e-6)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def set_qpos_qvel(self, env_ids, qpos, qvel) -> None:
        super().set_qpos_qvel(env_ids, qpos, qvel)
        self._state[self._rows(env_ids), self._extra] = 0.0  # everything past qvel restarts

    def refresh_sensors(self, env_ids) -> None:
        """Sensors of the listed envs at their current state, with zero control, as after a reset
        (so a reset env's first observation is not stale)."""
        d = self._probe
        for i in self._rows(env_ids).tolist():
            d.qpos[:] = self.state[i, self._qpos]
            d.qvel[:] = 0.0
            mujoco.mj_forward(self.models[i], d)
            self.sensor_out[i, -1] = d.sensordata

    # Checkpoints and rendering (host copies) --------------------------------------------------
    def get_physics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the full physics state [num_envs, nstate] and the sensors, float64 on the
        host: the same layout on every backend, so checkpoints move between them."""
        return torch.from_numpy(self.state.copy()), self.sensordata.clone()

    def set_physics(self, state: torch.Tensor, sensors: torch.Tensor) -> None:
        self._state.copy_(state)
        self.sensordata.copy_(sensors)

    def host_state(self, i: int) -> np.ndarray:
        """Env ``i``'s full physics state on the host, for ``mj_setState``."""
        return self.state[i]

    # Per-env model parameters -----------------------------------------------------------------
    def _values(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def _write(self, env_ids, writes: list[Write]) -> None:
        ids = self._rows(env_ids).tolist()
        for name, index, values in writes:
            for k, i in enumerate(ids):
                getattr(self.models[i], name)[index] = values[k]
