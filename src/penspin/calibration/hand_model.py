"""The simulated hand alone, replaying logged joint targets under candidate dynamics.

Each world holds one (candidate, trial) pair, so a whole CMA-ES population over every trial is
one batched simulation. The pen is moved out of reach: calibration data is recorded with the pen
absent (``penspin excite``), and the hand's own tracking is what is being fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from penspin.sim.allegro import NUM_JOINTS
from penspin.sim.cpu_backend import CpuBackend

TRAIN_KP, TRAIN_KD = 3.0, 0.1  # the training scene's nominal PD gains
PHYSICS_DT = 0.005  # the training scene's physics step (s)
PEN_AWAY = (0.5, 0.5, 0.1)  # m: a pen parked far from the hand


def substeps_for(control_hz: float) -> tuple[int, float]:
    """Physics substeps per control step and their length, as the proxy rounds them."""
    substeps = max(1, round(1.0 / (control_hz * PHYSICS_DT)))
    return substeps, 1.0 / (control_hz * substeps)


@dataclass(frozen=True)
class HandDynamics:
    """Candidate dynamics per world: arrays [W] (gains as multiples of the nominal ones)."""

    kp_scale: np.ndarray
    kd_scale: np.ndarray
    frictionloss: np.ndarray  # N m
    latency: np.ndarray  # s from command to actuation


class HandSimulator:
    """``simulate`` the joint angles [W, T, 16] that ``targets`` [W, T, 16] produce."""

    def __init__(self, num_worlds: int, control_hz: float, num_threads: int = 2):
        self.control_hz = control_hz
        self.substeps, self.substep_dt = substeps_for(control_hz)
        self.backend = CpuBackend(num_worlds, self.substeps, num_threads, self.substep_dt)
        self.num_worlds = num_worlds

    def simulate(self, dyn: HandDynamics, q0: np.ndarray, start_target: np.ndarray,
                 targets: np.ndarray) -> np.ndarray:
        """Reading ``t`` is taken before command ``t`` (as ``run_trial`` does): the result's
        step 0 is ``q0`` and step t+1 follows one control period of command ``t``, whose first
        ``latency`` still tracks command ``t-1`` (``start_target`` before step 0)."""
        w, steps = targets.shape[:2]
        if w != self.num_worlds:
            raise ValueError(f"expected {self.num_worlds} worlds, got {w}")
        b, layout = self.backend, self.backend.layout
        ids = np.arange(w)
        ones = np.ones((w, NUM_JOINTS))
        b.set_pd_gains(ids, TRAIN_KP * dyn.kp_scale[:, None] * ones,
                       TRAIN_KD * dyn.kd_scale[:, None] * ones)
        b.set_joint_friction(ids, dyn.frictionloss[:, None] * ones)
        qpos = np.zeros((w, layout.nq))
        qpos[:, :NUM_JOINTS] = q0
        pen = layout.pen_qpos
        qpos[:, pen] = np.concatenate([np.tile(PEN_AWAY, (w, 1)), np.tile([1.0, 0, 0, 0], (w, 1))],
                                      1)
        b.set_qpos_qvel(ids, qpos, np.zeros((w, layout.nv)))
        # Share of each substep that still tracks the previous command (fractional latency keeps
        # the fit's objective smooth; the proxy rounds to whole substeps).
        late = np.clip(dyn.latency[:, None] / self.substep_dt - np.arange(self.substeps), 0, 1)
        out = np.empty((w, steps, NUM_JOINTS))
        out[:, 0] = q0
        previous = start_target
        ctrl = b.ctrl.numpy()
        b.qfrc[:] = 0.0
        for t in range(steps - 1):
            ctrl[:] = late[..., None] * previous[:, None] + (1 - late[..., None]) * targets[:, t,
                                                                                           None]
            b.step()
            out[:, t + 1] = b.qpos.numpy()[:, :NUM_JOINTS]
            previous = targets[:, t]
        return out

    def close(self) -> None:
        self.backend.close()
