"""Batched physics on MuJoCo Warp: every env is a world of one ``mjw.Data``, stepped by kernels.

Same scene and same interface as :class:`~penspin.sim.cpu_backend.CpuBackend` (``qpos``,
``ctrl``, ``qfrc``, ``sensordata``, ``diverged``, ``set_pen``...; see
:mod:`penspin.sim.tensor_state`), so the task runs on either unchanged. Here they are zero-copy
``wp.to_torch`` views of the device arrays, float32 on the Warp device: a control step, the
divergence check, restarts of diverged worlds, resets and per-env parameter writes (rows of
batched model fields) all stay on the device, with no host copy and no loop over envs. Only
checkpoints (``get_physics``, float64 like the CPU backend's, so they move between backends) and
rendering copy to the host.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import mujoco
import numpy as np
import torch

from penspin.config import ConfigError
from penspin.sim import scene
from penspin.sim.model_params import PerEnvParams, Write
from penspin.sim.tensor_state import TensorState

try:
    import mujoco_warp as mjw
    import warp as wp
except ImportError:
    mjw = wp = None

INSTALL_HINT = 'the warp backend needs MuJoCo Warp: pip install "penspin[gpu]"'
# mjMAXVAL: beyond it MuJoCo's own checks call a state diverged and reset it.
_MAX_VALUE = 1e10
# Any joint or pen faster than this (rad/s or m/s) is a blown-up float32 solve, not a hand
# spinning a pen (the CPU backend's fastest under random actions: ~60). On a GPU a few worlds per
# 10,000 steps got there without reaching 1e10 within a control step (docs/gpu.md).
_MAX_SPEED = 1e3
# Model fields that differ per env; everything else is shared by all worlds.
_BATCHED = ("geom_size", "geom_rbound", "geom_aabb", "geom_pos", "geom_friction", "geom_solref",
            "body_mass", "body_inertia", "body_ipos", "body_invweight0", "dof_invweight0",
            "actuator_gainprm", "actuator_biasprm", "dof_frictionloss")


class WarpBackend(TensorState, PerEnvParams):
    """Holds ``num_envs`` worlds on a Warp device and steps them ``substeps`` at a time.

    ``nconmax`` / ``njmax``: contacts and constraint rows allotted per world (Warp preallocates).
    A world that overflows them, whose state goes non-finite or past 1e10, or that moves faster
    than ``_MAX_SPEED`` is flagged in ``diverged`` and restarted from the model's initial state,
    as MuJoCo does on the CPU.

    ``graph``: on CUDA, record one physics step (a few hundred kernel launches) once as a CUDA
    graph and replay it, so a step costs one launch from Python instead of hundreds. CUDA cannot
    capture on torch's default stream, so the graph runs on a Warp stream of its own, ordered
    after and before torch's work by stream waits.
    """

    def __init__(self, num_envs: int, substeps: int = 10, timestep: float = 0.005,
                 device: str = "cpu", nconmax: int = 32, njmax: int = 128, graph: bool = True):
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
            raise NotImplementedError("the warp backend keeps time, qpos and qvel only")
        self._qpos = slice(1, 1 + nq)
        self._qvel = slice(1 + nq, 1 + nq + nv)

        with wp.ScopedDevice(self.device):
            self._m = mjw.put_model(self.model, batch_sizes=dict.fromkeys(_BATCHED, num_envs))
            self._per_world = dict(nconmax=nconmax, njmax=njmax)
            self._d = mjw.put_data(self.model, mujoco.MjData(self.model), nworld=num_envs,
                                   **self._per_world)
        self._m.opt.warn_overflow = 0  # overflowing worlds are flagged as diverged instead
        # Zero-copy torch views of the device arrays (vector fields gain a trailing axis).
        self._params = {k: wp.to_torch(getattr(self._m, k)) for k in _BATCHED}
        self._dev = {k: wp.to_torch(getattr(self._d, k)) for k in (
            "ctrl", "qfrc_applied", "overflow")}
        self.time, self.qpos, self.qvel, self.sensordata = (
            wp.to_torch(getattr(self._d, k)) for k in ("time", "qpos", "qvel", "sensordata"))
        self.torch_device, self.dtype = self.qpos.device, self.qpos.dtype
        control = torch.zeros(num_envs, substeps, nu + nv, dtype=self.dtype,
                              device=self.torch_device)
        self.ctrl = control[:, :, :nu]
        self.qfrc = control[:, :, nu:]
        self.diverged = torch.zeros(num_envs, dtype=torch.bool, device=self.torch_device)
        # On CUDA, Warp launches on torch's stream so the two never race.
        self._stream = (wp.stream_from_torch(self.torch_device) if self.device.is_cuda
                        else None)
        self._graph = self._graph_stream = None
        if graph and self.device.is_cuda:
            self._capture()

    def _capture(self) -> None:
        """Record ``mjw.step`` as a CUDA graph on a stream of its own (recording runs nothing).

        A step of a one-world scratch ``Data`` first compiles and loads the step's kernels, so
        the capture need not load every module Warp knows of, and the envs' worlds stay as set.
        """
        stream = wp.Stream(self.device)
        try:
            with wp.ScopedStream(stream):
                scratch = mjw.put_data(self.model, mujoco.MjData(self.model), nworld=1,
                                       **self._per_world)
                mjw.step(self._m, scratch)
                with wp.ScopedCapture(force_module_load=False) as capture:
                    mjw.step(self._m, self._d)
        except Exception as err:  # a driver or Warp that cannot capture: step eagerly instead
            warnings.warn(f"warp backend: CUDA graph capture failed ({err}); stepping eagerly",
                          stacklevel=3)
            return
        self._graph, self._graph_stream = capture.graph, stream

    @property
    def graph(self) -> bool:
        """Whether physics steps replay a CUDA graph."""
        return self._graph is not None

    @property
    def overflowed(self) -> torch.Tensor:
        """Worlds that ran out of contacts or constraint rows in the last step (a divergence)."""
        return self._dev["overflow"] != 0

    def _physics_step(self) -> None:
        if self._graph is None:
            mjw.step(self._m, self._d)
            return
        self._graph_stream.wait_stream(self._stream)  # after torch wrote ctrl and qfrc
        wp.capture_launch(self._graph, stream=self._graph_stream)
        self._stream.wait_stream(self._graph_stream)  # before torch reads the new state

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
    def step(self) -> None:
        """Advance every env by ``substeps`` physics steps using ``self.ctrl`` / ``self.qfrc``."""
        dev = self._dev
        dev["overflow"].zero_()
        with self._scope():
            for s in range(self.substeps):
                dev["ctrl"].copy_(self.ctrl[:, s])
                dev["qfrc_applied"].copy_(self.qfrc[:, s])
                self._physics_step()
        state = self._state()
        self.diverged = (~torch.isfinite(state).all(1) | (state.abs() > _MAX_VALUE).any(1)
                         | (self.qvel.abs() > _MAX_SPEED).any(1)
                         | ~torch.isfinite(self.sensordata).all(1) | self.overflowed)
        # Diverged worlds restart from the initial state (warm starts and sensors cleared too);
        # the mask never leaves the device.
        with self._scope():
            mjw.reset_data(self._m, self._d, reset=wp.from_torch(self.diverged))

    def refresh_sensors(self, env_ids) -> None:
        """Sensors of the listed envs at their current state, with zero control, as after a reset.

        One forward pass over all worlds (derived quantities only; the state is untouched); the
        other envs keep their sensors.
        """
        rows = self._rows(env_ids)
        sensors = self.sensordata.clone()
        self._dev["ctrl"].zero_()
        self._dev["qfrc_applied"].zero_()
        with self._scope():
            mjw.forward(self._m, self._d)
        sensors[rows] = self.sensordata[rows]
        self.sensordata.copy_(sensors)

    def close(self) -> None:
        """Nothing to release: the device arrays go with the object."""

    # Checkpoints and rendering (host copies) --------------------------------------------------
    def _state(self) -> torch.Tensor:
        return torch.cat([self.time[:, None], self.qpos, self.qvel], 1)

    def get_physics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the physics state [num_envs, 1 + nq + nv] and the sensors, float64 on the
        host, laid out as the CPU backend's, so checkpoints move between backends."""
        return self._state().double().cpu(), self.sensordata.double().cpu()

    def set_physics(self, state: torch.Tensor, sensors: torch.Tensor) -> None:
        state = self._tensor(state)
        self.time.copy_(state[:, 0])
        self.qpos.copy_(state[:, self._qpos])
        self.qvel.copy_(state[:, self._qvel])
        self.sensordata.copy_(self._tensor(sensors))

    def host_state(self, i: int) -> np.ndarray:
        """Env ``i``'s full physics state on the host, for ``mj_setState``."""
        return self._state()[i].double().cpu().numpy()

    # Per-env model parameters -----------------------------------------------------------------
    def _values(self, x) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float64, device=self.torch_device)

    def _write(self, env_ids, writes: list[Write]) -> None:
        rows = self._rows(env_ids)
        for name, index, values in writes:
            param = self._params[name]  # viewed in MjModel's per-env layout, as indices are
            param = param.view(param.shape[0], *getattr(self.model, name).shape)
            param[(rows, *index)] = values.to(param.dtype)


class _HostModels(Sequence):
    """``backend.models[i]``: env ``i``'s model on the host, built when asked for."""

    def __init__(self, backend: WarpBackend):
        self._backend = backend

    def __len__(self) -> int:
        return self._backend.num_envs

    def __getitem__(self, i: int) -> mujoco.MjModel:
        return self._backend.host_model(i)
