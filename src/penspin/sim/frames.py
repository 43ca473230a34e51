"""Offscreen RGB frames of one env of a physics backend: the one path every video is drawn by.

``penspin render`` and the Gymnasium adapter's ``render()`` both draw through :class:`EnvFrames`.
MuJoCo binds its OpenGL backend when ``mujoco`` is first imported; this module selects a headless
one (``penspin.sim.gl``) first, so import it first in processes that render.
"""

from __future__ import annotations

# Imported first for its side effect: a headless GL backend, chosen before mujoco loads.
from penspin.sim import gl  # noqa: F401

# isort: split
import os
from typing import Any

import mujoco
import numpy as np

from penspin.config import ConfigError
from penspin.sim import scene

TAXEL_ON = (0.1, 0.95, 0.2, 0.95)
TAXEL_OFF = (0.55, 0.1, 0.1, 0.3)


def style_model(model: mujoco.MjModel) -> None:
    """Brighter light, fingertip marker and contact-sensor sites hidden: only taxels stay.

    Only visual fields of the env's own model change; physics is untouched.
    """
    model.vis.headlight.ambient[:] = 0.35
    model.vis.headlight.diffuse[:] = 0.55
    for name in scene.TIP_SITES:
        model.site_rgba[model.site(name).id, 3] = 0.0
        model.site_rgba[model.site(f"{name}_contact").id, 3] = 0.0


def paint_taxels(model: mujoco.MjModel, taxel_sites: tuple[int, ...], touched: np.ndarray) -> None:
    """Colour the taxel sites by a binary tactile reading (one value per taxel)."""
    on = np.asarray(touched)[:, None] > 0.5
    model.site_rgba[list(taxel_sites)] = np.where(on, TAXEL_ON, TAXEL_OFF)


class EnvFrames:
    """Draws env ``index`` of a backend (``models``, ``host_state``, ``layout``): hand, pen with
    its red/blue end caps, and taxels, green where touched."""

    def __init__(self, backend: Any, index: int = 0, camera: str = "front", width: int = 640,
                 height: int = 480):
        model = backend.models[index]
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise ConfigError(f"unknown camera {camera!r}; the scene has 'front', 'top', 'close'")
        vis = model.vis.global_
        vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
        style_model(model)
        try:
            self.renderer = mujoco.Renderer(model, height, width)
        except Exception as exc:
            raise RuntimeError(
                f"offscreen rendering failed (MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}): "
                f"{exc}. On a machine without a display set MUJOCO_GL=egl (or osmesa) before "
                "Python imports mujoco, or import penspin.sim.frames first."
            ) from exc
        # Shadows triple the cost of a frame on software GL (llvmpipe, OSMesa) and show nothing
        # about the spin.
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.backend = backend
        self.index = index
        self.model = model
        self.camera = camera
        self.data = mujoco.MjData(model)
        self.option = mujoco.MjvOption()
        self.option.sitegroup[4] = 1  # taxels live in site group 4

    def frame(self, touched: np.ndarray | None = None) -> np.ndarray:
        """An (H, W, 3) uint8 image of the env's current state; taxels coloured by ``touched``."""
        mujoco.mj_setState(self.model, self.data, self.backend.host_state(self.index),
                           mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(self.model, self.data)
        if touched is not None:
            paint_taxels(self.model, self.backend.layout.taxel_sites, touched)
        self.renderer.update_scene(self.data, self.camera, self.option)
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()
