"""Batched forward kinematics of the Allegro fingertips, in torch.

The student gets fingertip positions the way a real hand would, from joint angles through the
kinematic chain, never from the simulator's state. The chain is the one ``sim/scene.py`` builds
(palm pose, then per finger: base offset and rotation, four revolute joints, segment offsets along
local z, fingertip site at the last segment length), so in simulation the result equals MuJoCo's
fingertip sites. :func:`chain_description` gives the same chain as plain lists, which is what an
exported student carries so deployment code needs no penspin import.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from penspin.sim import allegro as A


def _quat_to_matrix(wxyz) -> np.ndarray:
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def chain_description() -> dict:
    """The fingertip chain as JSON-safe lists, fingers in joint order (index, thumb, middle, ring).

    Per finger: ``base_pos``/``base_rot`` of joint 0's body in the palm frame, ``offsets`` of
    bodies 1..3 in their parent's frame, ``tip`` offset in body 3's frame, unit joint ``axes``.
    """
    fingers = []
    for name in A.FINGERS:
        thumb = name == "thumb"
        segs = A.THUMB_SEGMENTS if thumb else A.FINGER_SEGMENTS
        axes = np.asarray(A.THUMB_AXES if thumb else A.FINGER_AXES, dtype=np.float64)
        base_pos, base_quat = A.FINGER_BASES[name]
        offsets = [list(map(float, s)) if isinstance(s, tuple) else [0.0, 0.0, float(s)]
                   for s in segs[:3]]
        fingers.append({
            "name": name,
            "base_pos": [float(v) for v in base_pos],
            "base_rot": _quat_to_matrix(base_quat).tolist(),
            "offsets": offsets,
            "tip": [0.0, 0.0, float(segs[3])],
            "axes": (axes / np.linalg.norm(axes, axis=1, keepdims=True)).tolist(),
        })
    return {"palm_pos": [float(v) for v in A.PALM_POS], "palm_rot": A.PALM_ROT.tolist(),
            "fingers": fingers}


def _axis_rotation(axes: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrices [..., 3, 3] about unit ``axes`` [F, 3] by ``angle`` [..., F]."""
    x, y, z = axes.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    s, c = angle.sin()[..., None, None], angle.cos()[..., None, None]
    eye = torch.eye(3, dtype=angle.dtype, device=angle.device)
    return eye + s * k + (1 - c) * (k @ k)


class FingertipFK(nn.Module):
    """``q [..., 16]`` (rad, penspin joint order) to world fingertip positions ``[..., 12]``.

    Fingertip order is index, thumb, middle, ring, the layout of the env's ``fingertip_pos``.
    The chain lives in non-persistent buffers: it follows ``.to(device)`` but is no weight.
    """

    def __init__(self, chain: dict | None = None):
        super().__init__()
        chain = chain or chain_description()
        f = chain["fingers"]
        t = lambda key: torch.tensor([finger[key] for finger in f], dtype=torch.float32)  # noqa: E731
        palm_rot = torch.tensor(chain["palm_rot"], dtype=torch.float32)
        # Joint 0's frame in the world, folded once: world = palm_pos + palm_rot @ (...).
        buffers = {
            "base_rot": palm_rot @ t("base_rot"),  # [4, 3, 3]
            "base_pos": torch.tensor(chain["palm_pos"]) + t("base_pos") @ palm_rot.T,  # [4, 3]
            "offsets": t("offsets"),  # [4, 3, 3]: bodies 1..3 in their parent's frame
            "tip": t("tip"),  # [4, 3]
            "axes": t("axes"),  # [4, 4, 3]
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        lead = q.shape[:-1]
        angles = q.float().reshape(*lead, 4, 4)
        rot = self.base_rot.expand(*lead, 4, 3, 3)
        pos = self.base_pos.expand(*lead, 4, 3)
        for j in range(4):
            rot = rot @ _axis_rotation(self.axes[:, j], angles[..., j])
            offset = self.offsets[:, j] if j < 3 else self.tip
            pos = pos + (rot @ offset[..., None])[..., 0]
        return pos.reshape(*lead, 12)
