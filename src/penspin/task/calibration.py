"""A calibration file (``penspin calibrate --out FILE.json``) applied to the training task.

The file's fitted values carry the proxy's setting names (``control_hz``, ``latency``,
``kp_scale``, ``kd_scale``, ``frictionloss``, ``reading_noise``, ``reading_offset``). Here they
centre the task's randomisation: each range keeps its relative width around the fitted value,
so training still sees variety, around the hand that was measured instead of the nominal one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from penspin.config import ConfigError
from penspin.task.config import TaskConfig

FITTED = ("control_hz", "latency", "kp_scale", "kd_scale", "frictionloss", "reading_noise",
          "reading_offset")
NOMINAL_KP, NOMINAL_KD = 3.0, 0.1


def load_calibration(path: str | Path) -> dict:
    """The fitted values of a calibration file; a clear error if any is missing."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read calibration {path}: {exc}") from None
    missing = [k for k in FITTED if not isinstance(data.get(k), int | float)]
    if missing:
        raise ConfigError(f"calibration {path} lacks fitted values for {missing}")
    return data


def _around(centre: float, lo_hi: tuple[float, ...], nominal: float) -> tuple[float, float]:
    """``lo_hi`` (a range about ``nominal``) moved to ``centre`` with the same relative width."""
    return centre * lo_hi[0] / nominal, centre * lo_hi[1] / nominal


def calibrated(task: TaskConfig, calib: dict, friction_spread: float = 0.5) -> TaskConfig:
    """``task`` with its control period, gains, dry friction, latency and reading noise centred
    on ``calib``; dry friction and latency get +-``friction_spread`` and +-1 substep."""
    hz = float(calib["control_hz"])
    substeps = max(1, round(1.0 / (hz * task.physics_dt)))
    dt = 1.0 / (hz * substeps)
    lat = round(float(calib["latency"]) / dt)
    rc = task.randomization
    f = float(calib["frictionloss"])
    rc = replace(
        rc,
        kp=_around(NOMINAL_KP * calib["kp_scale"], rc.kp, NOMINAL_KP),
        kd=_around(NOMINAL_KD * calib["kd_scale"], rc.kd, NOMINAL_KD),
        frictionloss=(f * (1 - friction_spread), f * (1 + friction_spread)),
        latency_substeps=(max(0, lat - 1), min(substeps, lat + 1)),
        obs_noise_step=float(calib["reading_noise"]),
        obs_noise_episode=float(calib["reading_offset"]),
    )
    return replace(task, substeps=substeps, physics_dt=dt, randomization=rc)


def calibrated_from(task: TaskConfig, path: str) -> TaskConfig:
    """``task`` with its randomisation centred on the calibration file at ``path``."""
    return calibrated(task, load_calibration(path))
