"""Per-env model parameters as (field, index, values) writes, shared by every backend.

What a pen's size or a PD gain means to MuJoCo is written once, here; each backend applies the
writes its own way (the CPU one to each env's ``MjModel``, the Warp one to rows of batched device
arrays). Indices address one env's field in ``MjModel``'s layout.
"""

from __future__ import annotations

import numpy as np

from penspin.sim.scene import SceneLayout

Write = tuple[str, tuple, np.ndarray]  # model field, index into it, values [num_envs, ...]


def capsule_inertia(mass: np.ndarray, radius: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Principal inertia (perp, perp, axial) of solid capsules of uniform density."""
    v_cyl = np.pi * radius**2 * 2 * half
    v_sph = 4.0 / 3.0 * np.pi * radius**3
    m_cyl = mass * v_cyl / (v_cyl + v_sph)
    m_sph = mass - m_cyl
    axial = m_cyl * radius**2 / 2 + m_sph * 2 * radius**2 / 5
    perp = (m_cyl * (radius**2 / 4 + (2 * half) ** 2 / 12)
            + m_sph * (2 * radius**2 / 5 + half**2 + 3 * half * radius / 4))
    return np.stack([perp, perp, axial], axis=-1)


def pen_writes(layout: SceneLayout, radius: np.ndarray, length: np.ndarray, mass: np.ndarray,
               com: np.ndarray, friction: np.ndarray, dampratio: np.ndarray) -> list[Write]:
    """A capsule pen ``length`` end to end per env, its inertia from its shape."""
    half = np.maximum(length / 2 - radius, 1e-4)
    inertia = capsule_inertia(mass, radius, half)
    g, b = layout.pen_geom, layout.pen_body
    tip_a, tip_b = layout.pen_marker_geoms
    col = lambda *v: np.stack(v, -1)  # noqa: E731
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
        ("body_invweight0", (b,), col(1.0 / mass, 3.0 / inertia.sum(-1))),
        ("dof_invweight0", (layout.pen_qvel,),
         np.concatenate([np.repeat(1.0 / mass[:, None], 3, 1), 1.0 / inertia], 1)),
    ]


def pd_gain_writes(kp: np.ndarray, kd: np.ndarray) -> list[Write]:
    """Position actuators with gains ``kp`` [num_envs, nu] and damping ``kd`` [num_envs, nu]."""
    return [("actuator_gainprm", (slice(None), 0), kp),
            ("actuator_biasprm", (slice(None), 1), -kp),
            ("actuator_biasprm", (slice(None), 2), -kd)]


class PerEnvParams:
    """``set_pen`` and ``set_pd_gains`` for a backend that applies writes with ``_write``."""

    layout: SceneLayout

    def _write(self, env_ids: np.ndarray, writes: list[Write]) -> None:
        raise NotImplementedError

    def set_pd_gains(self, env_ids: np.ndarray, kp: np.ndarray, kd: np.ndarray) -> None:
        self._write(env_ids, pd_gain_writes(kp, kd))

    def set_pen(self, env_ids: np.ndarray, radius: np.ndarray, length: np.ndarray,
                mass: np.ndarray, com: np.ndarray, friction: np.ndarray,
                dampratio: np.ndarray) -> None:
        """Give each listed env its own pen: a capsule ``length`` end to end, inertia from shape."""
        self._write(env_ids, pen_writes(self.layout, radius, length, mass, com, friction,
                                        dampratio))
