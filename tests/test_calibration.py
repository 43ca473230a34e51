"""Real-to-sim calibration: the search, the hand model, a fit on the proxy, and --calibration."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from penspin.calibration.cmaes import CMAES
from penspin.calibration.excite import ExciteConfig, ExciteSettings, excite
from penspin.calibration.fit import FitSettings
from penspin.calibration.hand_model import HandDynamics, HandSimulator
from penspin.calibration.run import CalibrateConfig, DataSettings, calibrate
from penspin.cli import main
from penspin.config import ConfigError
from penspin.robot.factory import RobotConfig
from penspin.robot.proxy import ProxyConfig
from penspin.task.calibration import calibrated, load_calibration
from penspin.task.config import RandomizationConfig, TaskConfig
from penspin.task.env import PenSpinEnv


def test_cmaes_finds_the_minimum_of_a_shifted_quadratic():
    es = CMAES(np.zeros(3), 0.5, 8, seed=0)
    goal = np.array([0.3, -0.7, 1.2])
    for _ in range(80):
        x = es.ask()
        es.tell(x, ((x - goal) ** 2).sum(1))
    assert np.abs(es.best_x - goal).max() < 1e-3


def test_hand_model_latency_and_friction_change_the_trace():
    sim = HandSimulator(3, 18.0, num_threads=1)
    q0 = np.zeros((3, 16)) + 0.3
    targets = np.tile(np.linspace(0.3, 0.6, 10)[None, :, None], (3, 1, 16))
    dyn = HandDynamics(np.ones(3), np.ones(3), np.array([0.0, 0.0, 0.03]),
                       np.array([0.0, 0.02, 0.0]))
    out = sim.simulate(dyn, q0, q0, targets)
    sim.close()
    assert np.allclose(out[:, 0], q0)
    assert np.abs(out[1, 2] - out[0, 2]).max() > 1e-3  # latency delays the response
    assert np.abs(out[2, 5] - out[0, 5]).max() > 1e-3  # dry friction changes it


def test_calibration_recovers_the_proxys_hand(tmp_path):
    """A small synthetic run: 10 excitation trials on the proxy at severity 1."""
    proxy = ProxyConfig(gain_spread=0.0)
    excite("proxy", ExciteConfig(ExciteSettings(trials=10, seconds=3.0, amplitude=0.2,
                                                max_hz=2.0), RobotConfig(proxy=proxy)),
           tmp_path, progress=False)
    cfg = CalibrateConfig(FitSettings(generations=40, population=8, num_threads=1,
                                      progress=False),
                          DataSettings(segment_seconds=3.0, heldout=0.2))
    result = calibrate(str(tmp_path), cfg)
    assert result["control_hz"] == 18.0
    assert abs(result["latency"] - 0.015) < 0.0051  # one substep
    assert abs(result["kp_scale"] / proxy.kp_scale - 1) < 0.25
    assert abs(result["kd_scale"] / proxy.kd_scale - 1) < 0.25
    assert abs(result["frictionloss"] / proxy.frictionloss - 1) < 0.3
    assert abs(result["reading_noise"] / proxy.reading_noise - 1) < 0.3
    assert result["heldout"]["ratio"] < 0.5


def test_calibrated_task_centres_the_randomisation(tmp_path):
    calib = {"control_hz": 18.0, "latency": 0.015, "kp_scale": 0.75, "kd_scale": 1.6,
             "frictionloss": 0.02, "reading_noise": 0.005, "reading_offset": 0.015}
    task = calibrated(TaskConfig(), calib)
    assert task.substeps == 11 and task.control_dt == pytest.approx(1 / 18)
    assert np.mean(task.randomization.kp) == pytest.approx(2.25)
    assert np.mean(task.randomization.kd) == pytest.approx(0.16)
    assert task.randomization.latency_substeps == (2, 4)
    assert task.randomization.frictionloss == pytest.approx((0.01, 0.03))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({k: v for k, v in calib.items() if k != "latency"}))
    with pytest.raises(ConfigError, match="latency"):
        load_calibration(path)


def test_env_applies_dry_friction_and_latency():
    rc = RandomizationConfig(frictionloss=(0.02, 0.02), latency_substeps=(10, 10),
                             action_noise_episode=0.0, action_noise_step=0.0)
    env = PenSpinEnv(TaskConfig(num_envs=2, num_threads=1, randomization=rc))
    env.reset()
    assert np.allclose(env.backend.models[1].dof_frictionloss[:16], 0.02)
    before = env.targets.clone()
    env.step(torch.ones(2, 16))
    # Every substep of the step still tracked the previous target (latency = whole period).
    assert torch.allclose(env.backend.ctrl.float(), before[:, None].expand(-1, 10, -1))
    env.close()


def test_calibration_flag_changes_the_training_world(tmp_path, capsys):
    calib = {"control_hz": 18.0, "latency": 0.015, "kp_scale": 0.75, "kd_scale": 1.6,
             "frictionloss": 0.02, "reading_noise": 0.005, "reading_offset": 0.015}
    path = tmp_path / "calib.json"
    path.write_text(json.dumps(calib))
    main(["train-oracle", "--calibration", str(path), "--keys"])
    out = capsys.readouterr().out
    assert "env.substeps=11" in out and "env.randomization.frictionloss=(0.01, 0.03)" in out
    main(["train-oracle", "--keys"])
    assert "env.substeps=10" in capsys.readouterr().out


def test_excitation_stays_inside_the_limits_and_the_step_bound():
    from penspin.calibration.excite import excitation
    from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER

    centre = np.tile((np.asarray(JOINT_LOWER) + np.asarray(JOINT_UPPER)) / 2, (3, 1))
    cfg = dataclasses.replace(ExciteSettings(), amplitude=0.5)
    out = excitation(centre, 80, 18, 18.0, cfg, 0.15, np.random.default_rng(0))
    assert np.allclose(out[:, :18], centre[:, None])
    assert np.abs(np.diff(out, axis=1)).max() <= 0.15
    assert (out >= np.asarray(JOINT_LOWER) - 1e-9).all() and (out <= JOINT_UPPER).all()
