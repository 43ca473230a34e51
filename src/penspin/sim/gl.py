"""Pick a headless OpenGL backend before anything imports ``mujoco`` (import this module first).

MuJoCo binds its OpenGL backend when ``mujoco`` is first imported. ``MUJOCO_GL`` is kept if the
user set it; else EGL, else OSMesa, whichever library this machine has.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def select_headless_backend() -> None:
    if os.environ.get("MUJOCO_GL") or "mujoco" in sys.modules:
        return
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return


select_headless_backend()
