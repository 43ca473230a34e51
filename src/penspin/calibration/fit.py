"""Fit the hand's dynamics to logged (targets, readings) by CMA-ES over batched simulations.

Why this objective: a reading is the true angle plus a per-trial calibration offset plus
per-reading noise. The offset is solved in closed form for every candidate (the mean residual of
each joint over a trial), so the search spends itself on the dynamics: PD gains, dry friction and
command latency move the traces in ways an offset cannot. The control rate is discrete (whole
physics substeps), so each candidate rate gets its own search and the best one is kept. What is
left after the fit is noise: its step-to-step differences give the reading-noise scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from penspin.calibration.cmaes import CMAES
from penspin.calibration.hand_model import HandDynamics, HandSimulator
from penspin.config import ConfigError

NOMINAL_HZ = 20.0  # the training world's control rate


@dataclass(frozen=True)
class Trials:
    """Equal-length logged trials: ``readings`` and ``targets`` [N, T, 16], ``start`` [N, 16]
    (the target held before step 0)."""

    readings: np.ndarray
    targets: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.readings)

    def pick(self, idx: np.ndarray) -> Trials:
        return Trials(self.readings[idx], self.targets[idx], self.start[idx])


def decode(x: np.ndarray, period: float) -> HandDynamics:
    """Search coordinates [P, 4] to dynamics. With light fingers a joint's response is nearly
    first order: its time constant is Kd/Kp and its dead band friction/Kp, while Kp alone shows
    only where the torque saturates. So the coordinates are log Kp, log (Kd/Kp), friction/Kp
    (in 10 mN m per nominal Kp) and latency (in 10 ms), each a direction the data resolves on
    its own; magnitudes keep them in range without bounds."""
    x = np.atleast_2d(x)
    kp = np.exp(x[:, 0])
    return HandDynamics(kp_scale=kp, kd_scale=np.exp(x[:, 0] + x[:, 1]),
                        frictionloss=np.abs(x[:, 2]) * 0.01 * kp,
                        latency=np.minimum(np.abs(x[:, 3]) * 0.01, period))


def predict(sim: HandSimulator, dyn: HandDynamics, trials: Trials) -> np.ndarray:
    """Joint angles [P, N, T, 16] of every trial under each of the P candidates in ``dyn``
    (``sim`` holds P * N worlds, candidate-major)."""
    p, n = len(dyn.kp_scale), len(trials)
    world = HandDynamics(*(np.repeat(getattr(dyn, k), n) for k in
                           ("kp_scale", "kd_scale", "frictionloss", "latency")))
    tile = lambda a: np.tile(a, (p,) + (1,) * (a.ndim - 1))  # noqa: E731
    pred = sim.simulate(world, tile(trials.readings[:, 0]), tile(trials.start),
                        tile(trials.targets))
    return pred.reshape(p, n, *pred.shape[1:])


def residuals(sim: HandSimulator, dyn: HandDynamics, trials: Trials, skip: int) -> np.ndarray:
    """Readings minus prediction after ``skip`` settling steps, with each (candidate, trial,
    joint) offset removed: [P, N, T-skip, 16]."""
    r = (trials.readings - predict(sim, dyn, trials))[:, :, skip:]
    return r - r.mean(2, keepdims=True)


def rms(r: np.ndarray, axis=None) -> np.ndarray:
    return np.sqrt(np.mean(r**2, axis=axis))


@dataclass(frozen=True)
class FitSettings:
    generations: int = 60  # CMA-ES generations per candidate control rate
    population: int = 10  # candidates per generation, simulated together
    # Candidate control rates (Hz); empty: the rate the log was recorded at. A rate change is
    # nearly interchangeable with a gain change over a few seconds, so on a real hand the
    # loop's measured rate is the better answer; candidates are for when it is unknown.
    control_hz: tuple[float, ...] = ()
    skip_seconds: float = 1.0  # s at the start of each trial left out of the loss (settling)
    seed: int = 0  # CMA-ES sampling seed
    num_threads: int = 2  # physics threads for the candidates' rollouts
    progress: bool = True  # progress bar

    def check(self) -> None:
        if self.generations < 1 or self.population < 4:
            raise ConfigError("calibrate needs generations >= 1 and population >= 4")
        if self.control_hz and min(self.control_hz) <= 0:
            raise ConfigError(f"control_hz must list positive rates, got {self.control_hz}")


def fit(trials: Trials, cfg: FitSettings, log_hz: float) -> dict:
    """The best dynamics at each candidate rate (default: ``log_hz``, the log's own), and the
    overall best with its noise scales."""
    cfg.check()
    per_rate = {}
    for hz in cfg.control_hz or (log_hz,):
        skip = round(cfg.skip_seconds * hz)
        if trials.readings.shape[1] <= skip + 2:
            raise ConfigError(f"trials of {trials.readings.shape[1]} steps are too short to fit "
                              f"after skipping {skip} settling steps")
        sim = HandSimulator(cfg.population * len(trials), hz, cfg.num_threads)
        period = 1.0 / hz
        es = CMAES(np.array([0.0, 0.0, 1.0, 1.0]), 0.5, cfg.population, cfg.seed)
        bar = tqdm(range(cfg.generations), desc=f"calibrate @ {hz:g} Hz", unit="gen",
                   disable=not cfg.progress)
        for _ in bar:
            x = es.ask()
            loss = rms(residuals(sim, decode(x, period), trials, skip), axis=(1, 2, 3))
            es.tell(x, loss)
            bar.set_postfix(rms_mrad=f"{es.best_f * 1e3:.2f}")
        sim.close()
        per_rate[hz] = (es.best_f, es.best_x)
    hz = min(per_rate, key=lambda k: per_rate[k][0])
    loss, x = per_rate[hz]
    dyn = decode(x, 1.0 / hz)
    sim = HandSimulator(len(trials), hz, cfg.num_threads)
    raw = (trials.readings - predict(sim, dyn, trials)[0])[:, round(cfg.skip_seconds * hz):]
    sim.close()
    offsets = raw.mean(1)
    noise = raw - offsets[:, None]
    # White reading noise doubles in variance under differencing; model error is smooth and
    # mostly cancels there.
    reading_noise = float(np.sqrt(np.mean(np.diff(noise, axis=1) ** 2) / 2))
    return {
        "control_hz": float(hz), "latency": float(dyn.latency[0]),
        "kp_scale": float(dyn.kp_scale[0]), "kd_scale": float(dyn.kd_scale[0]),
        "frictionloss": float(dyn.frictionloss[0]), "reading_noise": reading_noise,
        "reading_offset": float(offsets.std()),
        "fit": {"rms_rad": float(loss), "trials": len(trials),
                "steps_per_trial": int(trials.readings.shape[1]),
                "rms_rad_by_control_hz": {f"{k:g}": float(v[0]) for k, v in per_rate.items()}},
    }


def window_errors(result: dict | None, trials: Trials, window_seconds: float = 1.0,
                  skip_seconds: float = 1.0, num_threads: int = 2) -> tuple[float, np.ndarray]:
    """RMS prediction error (rad) over ``window_seconds`` windows of whole-trial open-loop
    predictions, offsets removed per trial; ``result=None``: the nominal training world.
    Also returns the predictions [N, T, 16]."""
    hz = result["control_hz"] if result else NOMINAL_HZ
    n = len(trials)
    keys = ("kp_scale", "kd_scale", "frictionloss", "latency")
    nominal = {"kp_scale": 1.0, "kd_scale": 1.0, "frictionloss": 0.0, "latency": 0.0}
    dyn = HandDynamics(*(np.array([(result or nominal)[k]]) for k in keys))
    sim = HandSimulator(n, hz, num_threads)
    pred = predict(sim, dyn, trials)[0]
    sim.close()
    skip = round(skip_seconds * hz)
    r = (trials.readings - pred)[:, skip:]
    r = r - r.mean(1, keepdims=True)
    w = max(1, round(window_seconds * hz))
    count = r.shape[1] // w
    windows = r[:, : count * w].reshape(n, count, w, -1)
    return float(np.mean(rms(windows, axis=(2, 3)))) if count else math.nan, pred
