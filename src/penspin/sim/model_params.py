"""Per-env model parameters as (field, index, values) writes, shared by every backend.

What a pen's size or a PD gain means to MuJoCo is written once, here; each backend applies the
writes its own way (the CPU one to each env's ``MjModel``, the Warp one to rows of batched device
arrays). Indices address one env's field in ``MjModel``'s layout. The values are computed from
whatever arrays the backend hands in (numpy on the CPU, torch on the Warp device), with the same
arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch

from penspin.sim.scene import SceneLayout

Array = np.ndarray | torch.Tensor
Write = tuple[str, tuple, Array]  # model field, index into it, values [num_envs, ...]


def _xp(a: Array):
    """The array module of ``a`` (``stack`` and ``concatenate`` are spelled alike in both)."""
    return torch if isinstance(a, torch.Tensor) else np


def capsule_inertia(mass: Array, radius: Array, half: Array) -> Array:
    """Principal inertia (perp, perp, axial) of solid capsules of uniform density."""
    v_cyl = np.pi * radius**2 * 2 * half
    v_sph = 4.0 / 3.0 * np.pi * radius**3
    m_cyl = mass * v_cyl / (v_cyl + v_sph)
    m_sph = mass - m_cyl
    axial = m_cyl * radius**2 / 2 + m_sph * 2 * radius**2 / 5
    perp = (m_cyl * (radius**2 / 4 + (2 * half) ** 2 / 12)
            + m_sph * (2 * radius**2 / 5 + half**2 + 3 * half * radius / 4))
    return _xp(mass).stack([perp, perp, axial], -1)


def pen_writes(layout: SceneLayout, radius: Array, length: Array, mass: Array, com: Array,
               friction: Array, dampratio: Array) -> list[Write]:
    """A capsule pen ``length`` end to end per env, its inertia from its shape."""
    xp = _xp(mass)
    half = (length / 2 - radius).clip(min=1e-4)
    inertia = capsule_inertia(mass, radius, half)
    g, b = layout.pen_geom, layout.pen_body
    tip_a, tip_b = layout.pen_marker_geoms
    col = lambda *v: xp.stack(v, -1)  # noqa: E731
    inv_mass = 1.0 / mass
    return [
        ("geom_size", (g, slice(0, 2)), col(radius, half)),
        ("geom_rbound", (g,), radius + half),
        ("geom_aabb", (g, slice(3, 6)), col(radius, radius, half + radius)),
        ("geom_friction", (g, 0), friction),
        ("geom_solref", (g, 1), dampratio),
        ("geom_pos", (tip_a, 2), half),
        ("geom_pos", (tip_b, 2), -half),
        ("geom_size", (tip_a, 0), radius * 1.05),
        ("geom_size", (tip_b, 0), radius * 1.05),
        ("body_mass", (b,), mass),
        ("body_inertia", (b,), inertia),
        ("body_ipos", (b,), com),
        ("body_invweight0", (b,), col(inv_mass, 3.0 / inertia.sum(-1))),
        ("dof_invweight0", (layout.pen_qvel,),
         xp.concatenate([col(inv_mass, inv_mass, inv_mass), 1.0 / inertia], 1)),
    ]


def pd_gain_writes(kp: Array, kd: Array) -> list[Write]:
    """Position actuators with gains ``kp`` [num_envs, nu] and damping ``kd`` [num_envs, nu]."""
    return [("actuator_gainprm", (slice(None), 0), kp),
            ("actuator_biasprm", (slice(None), 1), -kp),
            ("actuator_biasprm", (slice(None), 2), -kd)]


def joint_friction_writes(frictionloss: Array) -> list[Write]:
    """Dry friction ``frictionloss`` [num_envs, nu] (N m) on the hand's joints (dofs 0..nu-1)."""
    return [("dof_frictionloss", (slice(0, frictionloss.shape[-1]),), frictionloss)]


class PerEnvParams:
    """``set_pen``, ``set_pd_gains`` and ``set_joint_friction`` for a backend that turns values
    (torch tensors or arrays) into its float64 arrays with ``_values`` and applies writes with
    ``_write``."""

    layout: SceneLayout

    def _values(self, x) -> Array:
        raise NotImplementedError

    def _write(self, env_ids, writes: list[Write]) -> None:
        raise NotImplementedError

    def set_pd_gains(self, env_ids, kp, kd) -> None:
        self._write(env_ids, pd_gain_writes(self._values(kp), self._values(kd)))

    def set_joint_friction(self, env_ids, frictionloss) -> None:
        self._write(env_ids, joint_friction_writes(self._values(frictionloss)))

    def set_pen(self, env_ids, radius, length, mass, com, friction, dampratio) -> None:
        """Give each listed env its own pen: a capsule ``length`` end to end, inertia from shape."""
        v = self._values
        self._write(env_ids, pen_writes(self.layout, v(radius), v(length), v(mass), v(com),
                                        v(friction), v(dampratio)))
