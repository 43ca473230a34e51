"""``penspin calibrate``: fit the simulated hand to a real hand's logs and write a JSON file.

Reads an excitation log (``excite_data.h5``, preferred) or successful replays
(``real_data.h5``: only each demonstration's first segment, which starts settled at its start
target; the pen's contacts then count as model error). A share of the trials is held out, and
the file records how well the calibrated and the nominal simulator predict them, beside a plot
of predicted against measured joint traces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from penspin.calibration.excite import FILE_NAME as EXCITE_FILE
from penspin.calibration.fit import FitSettings, Trials, fit, window_errors
from penspin.config import ConfigError
from penspin.replay import dataset


@dataclass(frozen=True)
class DataSettings:
    segment_seconds: float = 4.0  # s of each trial used (trials shorter than this are dropped)
    # The rate the log was recorded at (Hz); 0: the control_hz in the excite or replay log JSON
    # beside the data file.
    log_hz: float = 0.0
    heldout: float = 0.25  # share of trials held out to measure prediction error
    max_trials: int = 0  # use only the first N trials (0: all)


@dataclass(frozen=True)
class CalibrateConfig:
    fit: FitSettings = field(default_factory=FitSettings)
    data: DataSettings = field(default_factory=DataSettings)


def data_file(folder_or_file: str) -> Path:
    """A file as given; in a folder, its excitation log, else its replay data."""
    path = Path(folder_or_file)
    if path.is_dir():
        for name in (EXCITE_FILE, dataset.FILE_NAME, dataset.FULL_FILE_NAME):
            if (path / name).exists():
                return path / name
        raise ConfigError(f"{path} holds no {EXCITE_FILE} or {dataset.FILE_NAME}")
    if not path.exists():
        raise ConfigError(f"no such calibration data: {path}")
    return path


def log_rate(path: Path, cfg: DataSettings) -> float:
    """The control rate the data was logged at: as configured, else from its log JSON."""
    if cfg.log_hz > 0:
        return cfg.log_hz
    for log in sorted(path.parent.glob("excite_log*.json")) + sorted(
            path.parent.glob("replay_log*.json")):
        hz = json.loads(log.read_text()).get("control_hz")
        if hz:
            return float(hz)
    raise ConfigError(f"no excite_log.json or replay_log.json beside {path} says the control "
                      "rate: give it as data.log_hz=HZ")


def load_trials(path: Path, cfg: DataSettings, hz: float) -> Trials:
    steps = round(cfg.segment_seconds * hz)
    demos = [d for d in dataset.load_demos(path) if d.length >= steps]
    if cfg.max_trials > 0:
        demos = demos[: cfg.max_trials]
    if len(demos) < 2:
        raise ConfigError(f"{path}: {len(demos)} trials of at least {steps} steps; calibration "
                          "needs 2 or more (lower data.segment_seconds?)")
    cut = lambda key: np.stack([getattr(d, key)[:steps] for d in demos]).astype(np.float64)  # noqa: E731
    targets = cut("target")
    return Trials(cut("qpos"), targets, targets[:, 0])


def split(n: int, heldout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    k = min(n - 1, max(1, round(heldout * n))) if heldout > 0 else 0
    return np.sort(order[k:]), np.sort(order[:k])


def plot(path: Path, trials: Trials, nominal: np.ndarray, calibrated: np.ndarray,
         hz: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    joints = (1, 5, 9, 13)
    fig, axes = plt.subplots(len(joints), 1, figsize=(8, 8), sharex=True)
    for ax, j in zip(axes, joints, strict=True):
        measured = trials.readings[0, :, j]
        t = np.arange(len(measured)) / hz
        ax.plot(t, measured - np.mean(measured - calibrated[0, :, j]), "k.", ms=3,
                label="measured (offset removed)")
        ax.plot(t, calibrated[0, :, j], label="calibrated sim")
        ax.plot(np.arange(nominal.shape[1]) / hz, nominal[0, :, j], "--", label="nominal sim")
        ax.set_ylabel(f"joint {j} (rad)")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("s (held-out trial, open loop from its start)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def calibrate(source: str, cfg: CalibrateConfig) -> dict:
    path = data_file(source)
    hz = log_rate(path, cfg.data)
    trials = load_trials(path, cfg.data, hz)
    fit_idx, held_idx = split(len(trials), cfg.data.heldout, cfg.fit.seed)
    result = fit(trials.pick(fit_idx), cfg.fit, hz)
    result["source"] = str(path)
    result["settings"] = asdict(cfg)
    if len(held_idx):
        held = trials.pick(held_idx)
        nominal_err, nominal = window_errors(None, held, num_threads=cfg.fit.num_threads)
        calib_err, calib = window_errors(result, held, num_threads=cfg.fit.num_threads)
        result["heldout"] = {"trials": len(held_idx), "window_s": 1.0,
                             "rms_rad_nominal": nominal_err, "rms_rad_calibrated": calib_err,
                             "ratio": calib_err / nominal_err}
        result["_traces"] = (held, nominal, calib)
    return result


def main(args) -> None:
    from penspin.cli_support import resolve

    cfg = resolve(CalibrateConfig(), args)
    if cfg is None:
        return
    result = calibrate(args.real_dataset_folder, cfg)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    traces = result.pop("_traces", None)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if traces is not None:
        plot(out.with_suffix(".png"), *traces, result["control_hz"])
    print(f"control {result['control_hz']:g} Hz, latency {result['latency'] * 1e3:.1f} ms, "
          f"Kp x{result['kp_scale']:.3f}, Kd x{result['kd_scale']:.3f}, dry friction "
          f"{result['frictionloss']:.4f} N m, reading noise {result['reading_noise'] * 1e3:.2f} "
          f"mrad, offsets {result['reading_offset'] * 1e3:.1f} mrad; fit RMS "
          f"{result['fit']['rms_rad'] * 1e3:.2f} mrad; written to {out}")
    if "heldout" in result:
        h = result["heldout"]
        print(f"held-out 1 s windows ({h['trials']} trials): calibrated "
              f"{h['rms_rad_calibrated'] * 1e3:.2f} mrad, nominal {h['rms_rad_nominal'] * 1e3:.2f} "
              f"mrad (ratio {h['ratio']:.2f}); traces in {out.with_suffix('.png')}")
