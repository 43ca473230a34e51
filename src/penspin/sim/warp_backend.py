"""Batched physics on MuJoCo Warp: every env is a world of one ``mjw.Data``, stepped by kernels.

Same scene, same interface and same array layouts as :class:`~penspin.sim.cpu_backend.CpuBackend`
(``state``, ``ctrl``, ``qfrc``, ``sensordata``, ``diverged``, ``set_pen``...), so the task runs
on either unchanged. Per-env parameters live in batched model fields (one row per world) and are
written by index through torch views of the device arrays, without a loop over envs.

The task keeps its state in host numpy arrays, so ``step`` copies the state and controls to the
device and the new state and sensors back: one transfer each way per control step (on Warp's CPU
device these are memcpys). Warp computes in float32; the host mirror is float64 like the CPU
backend's, so checkpoints move between backends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import mujoco
import numpy as np
import torch

from penspin.config import ConfigError
from penspin.sim import scene
from penspin.sim.host_state import HostState
from penspin.sim.model_params import PerEnvParams, Write

try:
    import mujoco_warp as mjw
    import warp as wp
except ImportError:
    mjw = wp = None

INSTALL_HINT = 'the warp backend needs MuJoCo Warp: pip install "penspin[gpu]"'
# mjMAXVAL: beyond it MuJoCo's own checks call a state diverged and reset it.
_MAX_VALUE = 1e10
# Model fields that differ per env; everything else is shared by all worlds.
_BATCHED = ("geom_size", "geom_rbound", "geom_aabb", "geom_pos", "geom_friction", "geom_solref",
            "body_mass", "body_inertia", "body_ipos", "body_invweight0", "dof_invweight0",
            "actuator_gainprm", "actuator_biasprm")


class WarpBackend(HostState, PerEnvParams):
    """Holds ``num_envs`` worlds on a Warp device and steps them ``substeps`` at a time.

    ``nconmax`` / ``njmax``: contacts and constraint rows allotted per world (Warp preallocates).
    A world that overflows them, or whose state goes non-finite or past 1e10, is flagged in
    ``diverged`` and restarted from the model's initial state, as MuJoCo does on the CPU.
    """

    def __init__(self, num_envs: int, substeps: int = 10, timestep: float = 0.005,
                 device: str = "cpu", nconmax: int = 32, njmax: int = 128):
        if mjw is None:
            raise ConfigError(INSTALL_HINT)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)  # no per-kernel chatter
        wp.init()
        if device != "cpu" and not wp.is_cuda_available():
            raise ConfigError(f"env.device={device}: Warp finds no CUDA device; use env.device=cpu")
        self.device = wp.get_device(device)
        self.num_envs = num_envs
        self.substeps = substeps
        self.model = scene.load_model()
        self.model.opt.timestep = timestep
        self.layout = scene.layout(self.model)
        nq, nv, nu = self.model.nq, self.model.nv, self.model.nu
        self.nstate = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        if self.nstate != 1 + nq + nv:
            raise NotImplementedError("the warp backend mirrors time, qpos and qvel only")
        self._qpos = slice(1, 1 + nq)
        self._qvel = slice(1 + nq, 1 + nq + nv)

        data0 = mujoco.MjData(self.model)
        self._init_state = np.concatenate([[0.0], data0.qpos, data0.qvel])
        self.state = np.tile(self._init_state, (num_envs, 1))
        self.control = np.zeros((num_envs, substeps, nu + nv))
        self.ctrl = self.control[:, :, :nu]
        self.qfrc = self.control[:, :, nu:]
        self.sensor_out = np.zeros((num_envs, 1, self.model.nsensordata))
        self.diverged = np.zeros(num_envs, dtype=bool)

        with wp.ScopedDevice(self.device):
            self._m = mjw.put_model(self.model, batch_sizes=dict.fromkeys(_BATCHED, num_envs))
            self._d = mjw.put_data(self.model, data0, nworld=num_envs, nconmax=nconmax,
                                   njmax=njmax)
        self._m.opt.warn_overflow = 0  # overflowing worlds are flagged as diverged instead
        # Zero-copy torch views of the device arrays (vector fields gain a trailing axis).
        self._params = {k: wp.to_torch(getattr(self._m, k)) for k in _BATCHED}
        self._dev = {k: wp.to_torch(getattr(self._d, k)) for k in (
            "time", "qpos", "qvel", "ctrl", "qfrc_applied", "sensordata", "overflow")}
        self._tdevice = self._dev["qpos"].device
        # On CUDA, Warp launches on torch's stream so the two never race.
        self._stream = wp.stream_from_torch(self._tdevice) if self.device.is_cuda else None

    def _scope(self) -> contextlib.AbstractContextManager:
        if self._stream is None:
            return wp.ScopedDevice(self.device)
        return wp.ScopedStream(self._stream)

    @property
    def models(self) -> Sequence[mujoco.MjModel]:
        return _HostModels(self)

    def host_model(self, i: int) -> mujoco.MjModel:
        """Env ``i``'s model as a host ``MjModel`` (for rendering and checks)."""
        m = scene.load_model()
        m.opt.timestep = self.model.opt.timestep
        for k, v in self._params.items():
            getattr(m, k)[:] = v[i].cpu().numpy().reshape(getattr(m, k).shape)
        return m

    # Stepping ---------------------------------------------------------------------------------
    def _upload_state(self) -> None:
        for key, cols in (("time", 0), ("qpos", self._qpos), ("qvel", self._qvel)):
            self._dev[key].copy_(torch.from_numpy(self.state[:, cols]))

    def step(self) -> None:
        """Advance every env by ``substeps`` physics steps using ``self.ctrl`` / ``self.qfrc``."""
        dev, nu = self._dev, self.model.nu
        self._upload_state()
        control = torch.from_numpy(self.control).to(self._tdevice, torch.float32)
        dev["overflow"].zero_()
        with self._scope():
            for s in range(self.substeps):
                dev["ctrl"].copy_(control[:, s, :nu])
                dev["qfrc_applied"].copy_(control[:, s, nu:])
                mjw.step(self._m, self._d)
        state = torch.cat([dev["time"][:, None], dev["qpos"], dev["qvel"]], 1).double().cpu()
        sensors = dev["sensordata"].double().cpu()
        bad = (~torch.isfinite(state).all(1) | (state.abs() > _MAX_VALUE).any(1)
               | ~torch.isfinite(sensors).all(1) | (dev["overflow"] != 0).cpu())
        self.state[:] = state.numpy()
        self.sensor_out[:, -1] = sensors.numpy()
        self.diverged = bad.numpy()
        if self.diverged.any():
            self._restart(self.diverged)

    def _restart(self, mask: np.ndarray) -> None:
        """Clear diverged worlds on the device (warm starts too) and give them the initial state."""
        with self._scope():
            mjw.reset_data(self._m, self._d, reset=wp.array(mask, dtype=bool))
        self.state[mask] = self._init_state
        self.sensor_out[mask] = 0.0

    def refresh_sensors(self, env_ids: np.ndarray) -> None:
        """Sensors of the listed envs at their current state, with zero control, as after a reset.

        One forward pass over all worlds (derived quantities only; the state is untouched).
        """
        self._upload_state()
        self._dev["ctrl"].zero_()
        self._dev["qfrc_applied"].zero_()
        with self._scope():
            mjw.forward(self._m, self._d)
        self.sensor_out[env_ids, -1] = self._dev["sensordata"].double().cpu().numpy()[env_ids]

    def close(self) -> None:
        """Nothing to release: the device arrays go with the object."""

    # Per-env model parameters -----------------------------------------------------------------
    def _write(self, env_ids: np.ndarray, writes: list[Write]) -> None:
        rows = torch.as_tensor(np.asarray(env_ids), device=self._tdevice)
        for name, index, values in writes:
            param = self._params[name]  # viewed in MjModel's per-env layout, as indices are
            param = param.view(param.shape[0], *getattr(self.model, name).shape)
            param[(rows, *index)] = torch.as_tensor(values, dtype=torch.float32,
                                                    device=self._tdevice)


class _HostModels(Sequence):
    """``backend.models[i]``: env ``i``'s model on the host, built when asked for."""

    def __init__(self, backend: WarpBackend):
        self._backend = backend

    def __len__(self) -> int:
        return self._backend.num_envs

    def __getitem__(self, i: int) -> mujoco.MjModel:
        return self._backend.host_model(i)
