"""Batched quaternion helpers (MuJoCo's w, x, y, z convention)."""

from __future__ import annotations

import torch


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotation_vector(q: torch.Tensor) -> torch.Tensor:
    """Axis times angle (radians) of a unit quaternion, taking the short way round."""
    q = torch.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    # angle / sin(angle/2) -> 2 as s -> 0
    scale = torch.where(s > 1e-8, angle / s.clamp_min(1e-12), torch.full_like(s, 2.0))
    return v * scale


def angular_velocity(q_now: torch.Tensor, q_prev: torch.Tensor, dt: float) -> torch.Tensor:
    """World-frame angular velocity from two orientations ``dt`` apart."""
    return rotation_vector(quat_mul(q_now, quat_conj(q_prev))) / dt


def quat_about_z(angle: torch.Tensor) -> torch.Tensor:
    half = angle / 2
    zeros = torch.zeros_like(half)
    return torch.stack([half.cos(), zeros, zeros, half.sin()], dim=-1)
