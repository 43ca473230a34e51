"""Batched CPU physics: every env's substeps run in C on a thread pool, without the GIL.

One ``MjModel`` per env (so pen size, mass, friction and PD gains can differ per env) and one
``MjData`` per thread; ``mujoco.rollout`` steps all envs for one control step in a single call.
The task sees plain numpy arrays of states and sensors and never loops over envs.
"""

from __future__ import annotations

import mujoco
import numpy as np
from mujoco import rollout

from penspin.sim import scene
from penspin.sim.host_state import HostState
from penspin.sim.model_params import PerEnvParams, Write

_CONTROL_SPEC = int(mujoco.mjtState.mjSTATE_CTRL) | int(mujoco.mjtState.mjSTATE_QFRC_APPLIED)
_STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Divergent envs are detected (their time restarts) and handled by the task, so MuJoCo's
# per-event console warning is noise.
mujoco.set_mju_user_warning(lambda _msg: None)


class CpuBackend(HostState, PerEnvParams):
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
        self._qvel = slice(1 + nq, 1 + nq + nv)
        data0 = mujoco.MjData(self.model)
        init = np.empty(self.nstate)
        mujoco.mj_getState(self.model, data0, init, _STATE_SPEC)
        self.state = np.tile(init, (num_envs, 1))
        self.control = np.zeros((num_envs, substeps, nu + nv))
        self.ctrl = self.control[:, :, :nu]
        self.qfrc = self.control[:, :, nu:]
        self.state_out = np.empty((num_envs, substeps, self.nstate))
        self.sensor_out = np.empty((num_envs, substeps, self.model.nsensordata))
        self._runner = rollout.Rollout(nthread=nthread) if nthread > 1 else None
        self.diverged = np.zeros(num_envs, dtype=bool)

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
        self.diverged = np.abs(self.state[:, 0] - t_expected) > 1e-6

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def refresh_sensors(self, env_ids: np.ndarray) -> None:
        """Sensors of the listed envs at their current state, with zero control, as after a reset
        (so a reset env's first observation is not stale)."""
        d = self._probe
        for i in env_ids:
            d.qpos[:] = self.state[i, self._qpos]
            d.qvel[:] = 0.0
            mujoco.mj_forward(self.models[i], d)
            self.sensor_out[i, -1] = d.sensordata

    # Per-env model parameters -----------------------------------------------------------------
    def _write(self, env_ids: np.ndarray, writes: list[Write]) -> None:
        for name, index, values in writes:
            for k, i in enumerate(env_ids):
                getattr(self.models[i], name)[index] = values[k]
