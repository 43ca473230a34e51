"""The proxy-real hand, the pose judge and the closed-loop controller that drive steps 3 and 4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from penspin.config import ConfigError
from penspin.robot.controllers import OpenLoop, PolicyController
from penspin.robot.interface import StartState
from penspin.robot.proxy import PENS_BY_NAME, PROXY_PENS, ProxyConfig, ProxyRobot, pens_named
from penspin.robot.safety import SafetyError
from penspin.robot.trial import PoseJudge, run_trial
from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER
from penspin.task.config import TerminationConfig
from penspin.task.grasps import load_cache

SCALE = 1.0 / 24.0


@pytest.fixture(scope="module")
def cache():
    return load_cache("", (0.28,))


def _rows_for(cache, name: str, count: int) -> np.ndarray:
    """Cache rows whose pen has about the proxy pen's length and thickness."""
    pen = PENS_BY_NAME[name]
    ok = np.flatnonzero((np.abs(cache["length"] - pen.length) < 0.006)
                        & (np.abs(cache["radius"] - pen.radius) < 0.001))
    assert len(ok) >= count, f"grasp cache has only {len(ok)} rows for {name}"
    return ok[:count]


def _start(cache, rows) -> StartState:
    return StartState(*(cache[k][rows].astype(np.float64)
                        for k in ("q", "target", "pen_pos", "pen_quat")))


def _hold(start: StartState, steps: int) -> OpenLoop:
    return OpenLoop(np.repeat(start.target[:, None], steps, 1))


# Pens -------------------------------------------------------------------------------------------
def test_pens_named():
    assert [p.name for p in pens_named("all")] == [p.name for p in PROXY_PENS]
    assert len(pens_named("all")) == 10
    collect = pens_named("collect")
    assert [p.name for p in collect] == ["marker", "pencil", "highlighter"]
    assert all(p.role == "collect" for p in collect)
    unseen = pens_named("unseen")
    assert len(unseen) == 7 and {p.name for p in unseen}.isdisjoint(p.name for p in collect)
    assert [p.name for p in pens_named("brush, marker")] == ["brush", "marker"]
    with pytest.raises(ConfigError) as exc:
        pens_named("marker,crayon")
    msg = str(exc.value)
    assert "crayon" in msg and "'collect'" in msg and "'unseen'" in msg
    assert all(p.name in msg for p in PROXY_PENS)  # every valid name is listed
    with pytest.raises(ConfigError, match="unknown proxy pen"):
        pens_named(" , ")


# The shift ---------------------------------------------------------------------------------------
def test_severity_zero_is_the_training_world():
    robot = ProxyRobot(pens_named("marker,pencil"), ProxyConfig(severity=0.0))
    try:
        assert robot.control_hz == 20.0 and robot.dt == pytest.approx(0.05)
        assert robot.substeps == 10 and robot.latency_steps == 0
        assert robot.backend.model.opt.timestep == pytest.approx(0.005)
        d = robot.describe()
        assert d["kp"] == pytest.approx(3.0) and d["kd"] == pytest.approx(0.1)
        for key in ("latency_s", "frictionloss", "reading_offset", "reading_noise",
                    "placement_pos", "placement_yaw"):
            assert d[key] == 0.0, key
        assert d["pens"] == ["marker", "pencil"]
        for m in robot.backend.models:
            assert np.all(m.dof_frictionloss[:16] == 0.0)
            kp = m.actuator_gainprm[:16, 0]
            # Each joint's driver keeps a +-gain_spread scatter, inside the training range 2.5-3.5.
            assert np.all((kp >= 2.7 - 1e-9) & (kp <= 3.3 + 1e-9))
            np.testing.assert_allclose(m.actuator_biasprm[:16, 1], -kp)
    finally:
        robot.stop()


def test_severity_one_is_the_documented_shift():
    cfg = ProxyConfig()
    assert cfg.severity == 1.0
    robot = ProxyRobot(pens_named("marker"), cfg)
    try:
        assert robot.control_hz == 18.0
        assert robot.substeps == 11  # 1 / (18 * 0.005) = 11.1
        assert robot.backend.model.opt.timestep == pytest.approx(1 / 18 / 11)
        assert robot.latency_steps == 3  # 15 ms / 5.05 ms
        d = robot.describe()
        assert d["control_hz"] == 18.0 and d["substeps"] == 11
        assert d["latency_s"] == pytest.approx(3 / 18 / 11)
        assert d["kp"] == pytest.approx(2.25) and d["kd"] == pytest.approx(0.16)
        assert d["frictionloss"] == pytest.approx(0.02)
        assert d["reading_offset"] == pytest.approx(0.015)
        assert d["reading_noise"] == pytest.approx(0.005)
        assert d["placement_pos"] == pytest.approx(0.004)
        assert d["placement_yaw"] == pytest.approx(0.15)
        m = robot.backend.models[0]
        np.testing.assert_allclose(m.dof_frictionloss[:16], 0.02)
        kp, kd = m.actuator_gainprm[:16, 0], -m.actuator_biasprm[:16, 2]
        assert np.all((kp >= 2.25 * 0.9 - 1e-9) & (kp <= 2.25 * 1.1 + 1e-9))
        assert np.all((kd >= 0.16 * 0.9 - 1e-9) & (kd <= 0.16 * 1.1 + 1e-9))
    finally:
        robot.stop()
    half = ProxyRobot(pens_named("marker"), ProxyConfig(severity=0.5))
    assert half.control_hz == pytest.approx(19.0)
    assert half.describe()["frictionloss"] == pytest.approx(0.01)
    half.stop()
    with pytest.raises(ConfigError, match="severity"):
        ProxyRobot(pens_named("marker"), ProxyConfig(severity=-0.1))


def test_each_hand_gets_its_own_pen():
    pens = pens_named("pencil,screwdriver,highlighter")
    robot = ProxyRobot(pens, ProxyConfig(severity=0.0))
    try:
        b, g = robot.layout.pen_body, robot.layout.pen_geom
        for m, pen in zip(robot.backend.models, pens, strict=True):
            assert m.body_mass[b] == pytest.approx(pen.mass)
            assert m.geom_size[g, 0] == pytest.approx(pen.radius)
            assert m.geom_size[g, 1] == pytest.approx(pen.length / 2 - pen.radius)
            assert m.geom_friction[g, 0] == pytest.approx(pen.friction)
        masses = [m.body_mass[b] for m in robot.backend.models]
        assert len(set(masses)) == 3
    finally:
        robot.stop()


# Starting, reading, commanding ------------------------------------------------------------------
def test_holding_a_cache_grasp_keeps_the_pen_up(cache):
    start = _start(cache, _rows_for(cache, "marker", 3))
    with ProxyRobot(pens_named("marker,marker,marker"), ProxyConfig(severity=0.0)) as robot:
        judge = PoseJudge(robot)
        log = run_trial(robot, _hold(start, 20), start, 20, judge)  # 1 s at 20 Hz
        assert log.steps == 20
        assert not judge.dropped.any(), judge.fall_step
        assert np.all(robot.pen_pos()[:, 2] > TerminationConfig().min_pen_height)
        # The targets it was told to hold are the ones it sent.
        np.testing.assert_allclose(log.target, np.repeat(start.target[:, None], 20, 1),
                                   atol=1e-6)
        # Fingers stay near the grasp (within the grip gap the cache targets encode).
        assert np.abs(robot.read() - start.q).max() < 0.15


def test_start_needs_a_start_state():
    with ProxyRobot(pens_named("marker"), ProxyConfig(severity=0.0)) as robot:
        with pytest.raises(ConfigError, match="start state"):
            robot.start(None)


def test_readings_are_exact_at_severity_zero_and_shifted_at_one(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=0.0)) as robot:
        q = robot.start(start)
        np.testing.assert_array_equal(q, robot.backend.qpos.numpy()[:, :16])
        robot.command(start.target)
        robot.tick()
        np.testing.assert_array_equal(robot.read(), robot.backend.qpos.numpy()[:, :16])
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=1.0)) as robot:
        q = robot.start(start)
        error = q - robot.backend.qpos.numpy()[:, :16]
        assert np.abs(error).max() > 1e-3
        assert np.abs(error).max() < 0.1  # offset 15 mrad + noise 5 mrad, a few sigma
        again = robot.read() - robot.backend.qpos.numpy()[:, :16]
        assert not np.array_equal(error, again)  # fresh noise on every reading
        # The calibration offset stays for the trial: the mean error of many readings is it.
        errors = [robot.read() - robot.backend.qpos.numpy()[:, :16] for _ in range(50)]
        np.testing.assert_allclose(np.mean(errors, 0), robot.offset, atol=0.003)
        assert np.abs(robot.offset).max() > 0.005


def test_pen_placement_error_only_with_severity(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    for severity in (0.0, 1.0):
        cfg = ProxyConfig(severity=severity, hold_seconds=0.0)  # see the pen where it was put
        with ProxyRobot(pens_named("marker,marker"), cfg) as robot:
            robot.start(start)
            dpos = robot.pen_pos() - start.pen_pos
            dquat = np.abs(robot.pen_quat() - start.pen_quat).max()
        if severity == 0.0:
            assert np.abs(dpos).max() < 1e-9 and dquat < 1e-9
        else:
            assert 1e-4 < np.abs(dpos[:, :2]).max() <= 0.004 + 1e-9
            assert np.abs(dpos[:, 2]).max() <= 0.001 + 1e-9
            assert dquat > 1e-3


def test_nan_command_raises_through_the_guard(cache):
    start = _start(cache, _rows_for(cache, "marker", 1))
    with ProxyRobot(pens_named("marker"), ProxyConfig(severity=0.0)) as robot:
        robot.start(start)
        bad = start.target.copy()
        bad[0, 5] = np.nan
        before = robot.target.copy()
        with pytest.raises(SafetyError, match="not finite"):
            robot.command(bad)
        np.testing.assert_array_equal(robot.target, before)  # nothing reached the hand
        with pytest.raises(SafetyError, match="shape"):
            robot.command(np.zeros((2, 16)))


# PoseJudge --------------------------------------------------------------------------------------
def test_pose_judge_cuts_before_a_drop_and_needs_rotation(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    steps, open_at = 40, 10
    targets = np.repeat(start.target[:, None], steps, 1)
    targets[1, open_at:] = JOINT_LOWER  # hand 1 lets go of its pen
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=0.0)) as robot:
        judge = PoseJudge(robot, min_rotation=0.0, drop_margin=0.25)
        assert judge.margin_steps == 5
        run_trial(robot, OpenLoop(targets), start, steps, judge)
    assert judge.dropped.tolist() == [False, True]
    fall = judge.fall_step[1]
    assert open_at <= fall < open_at + 10, fall
    assert judge.fall_step[0] == -1
    first, end = judge.kept_window()
    assert first.tolist() == [0, 0]
    assert end.tolist() == [steps, fall - 5]
    cum = np.cumsum(judge.increments, 0)
    assert judge.kept_rotation()[0] == pytest.approx(cum[-1, 0])
    assert judge.kept_rotation()[1] == pytest.approx(cum[fall - 5 - 1, 1])
    # Nothing is counted from the drop on.
    assert np.all(np.asarray(judge.increments)[fall:, 1] == 0.0)
    assert judge.rotation[1] == pytest.approx(cum[-1, 1])
    np.testing.assert_allclose(judge.held_seconds(), [steps * 0.05, fall * 0.05])
    # Success: kept rotation strictly above min_rotation.
    kept = judge.kept_rotation()
    judge.min_rotation = float(kept[0]) - 1e-6
    assert judge.success()[0]
    judge.min_rotation = float(kept[0])
    assert not judge.success()[0]
    judge.min_rotation = -1.0
    assert judge.success().tolist() == [True, True]  # a drop after the kept part may succeed
    judge.min_rotation = 2 * np.pi
    assert judge.success().tolist() == [False, False]


def test_pose_judge_window_clamps_at_zero_for_an_early_drop(cache):
    start = _start(cache, _rows_for(cache, "marker", 1))
    targets = np.repeat(JOINT_LOWER[None, None], 30, 1)
    with ProxyRobot(pens_named("marker"), ProxyConfig(severity=0.0)) as robot:
        judge = PoseJudge(robot, min_rotation=-1.0, drop_margin=1.0)
        run_trial(robot, OpenLoop(targets), start, 30, judge, stop_when_dropped=True)
    assert judge.dropped[0] and judge.fall_step[0] < 20
    assert judge.steps == judge.fall_step[0] + 1  # the trial stopped once every pen was down
    assert judge.kept_window()[1].tolist() == [0]
    assert judge.kept_rotation().tolist() == [0.0]
    assert judge.success().tolist() == [True]  # 0 > -1; min_rotation decides, not the drop


# PolicyController -------------------------------------------------------------------------------
class _Recorder:
    """A dummy policy returning a constant action and keeping every input it was given."""

    def __init__(self, value: float):
        self.value = value
        self.seen: list[dict] = []

    def __call__(self, inputs: dict) -> torch.Tensor:
        self.seen.append({k: v.clone() for k, v in inputs.items()})
        return torch.full((inputs["obs"].shape[0], 16), self.value)


def test_policy_controller_zero_action_holds_the_start_target(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    act = _Recorder(0.0)
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=0.0)) as robot:
        log = run_trial(robot, PolicyController(act, SCALE), start, 10, PoseJudge(robot))
    assert len(act.seen) == 10
    np.testing.assert_allclose(log.target, np.repeat(start.target[:, None], 10, 1), atol=1e-6)


def test_policy_controller_moves_by_action_scale_clamped_to_limits(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    steps = 40
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=0.0)) as robot:
        log = run_trial(robot, PolicyController(_Recorder(1.0), SCALE), start, steps,
                        PoseJudge(robot))
        # Clamped by the controller at +-1: an action of 5 moves no further.
        big = PolicyController(_Recorder(5.0), SCALE)
        big.start(start.q, start.target, robot)
        np.testing.assert_allclose(big(0, start.q, start.target, robot),
                                   np.minimum(start.target + SCALE, JOINT_UPPER))
    want = np.minimum(start.target[:, None] + SCALE * np.arange(1, steps + 1)[None, :, None],
                      JOINT_UPPER)
    np.testing.assert_allclose(log.target, want, atol=1e-5)
    assert np.any(log.target[:, -1] == np.float32(JOINT_UPPER))  # the limits were reached
    assert np.all(log.target[:, -1] <= JOINT_UPPER + 1e-6)


def test_policy_controller_history_matches_the_task():
    rng = np.random.default_rng(0)
    q0 = rng.uniform(0.0, 0.5, (2, 16))
    target0 = q0 + 0.05
    act = _Recorder(1.0)
    ctrl = PolicyController(act, SCALE)
    ctrl.start(q0, target0, robot=None)
    inputs = ctrl.inputs()
    assert inputs["proprio_hist"].shape == (2, 30, 32) and inputs["obs"].shape == (2, 96)
    row0 = torch.from_numpy(np.concatenate([q0, target0], 1)).float()
    assert torch.equal(inputs["proprio_hist"], row0[:, None].expand(2, 30, 32))
    assert torch.equal(inputs["obs"], inputs["proprio_hist"][:, -3:].reshape(2, 96))
    assert set(inputs) == {"obs", "proprio_hist"}

    # Step 0 acts on the filled history without pushing; it returns target_0.
    sent0 = ctrl(0, q0, target0, robot=None)
    np.testing.assert_allclose(sent0, np.clip(target0 + SCALE, JOINT_LOWER, JOINT_UPPER))
    assert torch.equal(act.seen[0]["proprio_hist"], inputs["proprio_hist"])
    # Step 1: the newest entry is (q measured after the step, the target that produced it).
    q1 = q0 + 0.01
    ctrl(1, q1, sent0, robot=None)
    hist = act.seen[1]["proprio_hist"]
    newest = torch.from_numpy(np.concatenate([q1, sent0], 1)).float()
    assert torch.equal(hist[:, -1], newest)
    assert torch.equal(hist[:, :-1], row0[:, None].expand(2, 29, 32))
    assert torch.equal(act.seen[1]["obs"][:, -32:], newest)
    assert torch.equal(act.seen[1]["obs"][:, :64], row0.repeat(1, 2))


def test_policy_controller_on_the_proxy_sees_its_readings_and_commands(cache):
    start = _start(cache, _rows_for(cache, "marker", 2))
    act = _Recorder(0.5)
    with ProxyRobot(pens_named("marker,marker"), ProxyConfig(severity=1.0)) as robot:
        log = run_trial(robot, PolicyController(act, SCALE), start, 4, PoseJudge(robot))
    first = act.seen[0]["proprio_hist"]
    np.testing.assert_allclose(first[:, -1].numpy(),
                               np.concatenate([log.qpos[:, 0], start.target], 1), atol=1e-6)
    for t in range(1, 4):
        np.testing.assert_allclose(act.seen[t]["proprio_hist"][:, -1].numpy(),
                                   np.concatenate([log.qpos[:, t], log.target[:, t - 1]], 1),
                                   atol=1e-6)
        np.testing.assert_allclose(act.seen[t]["proprio_hist"][:, -2].numpy(),
                                   act.seen[t - 1]["proprio_hist"][:, -1].numpy()
                                   if t > 1 else first[:, -1].numpy(), atol=1e-6)


def test_privileged_inputs_match_the_task_layout_and_drive_the_oracle(cache):
    from penspin.student.policy import load_policy

    start = _start(cache, _rows_for(cache, "marker", 2))
    with ProxyRobot(pens_named("marker,highlighter"), ProxyConfig(severity=0.0)) as robot:
        robot.start(start)
        priv = robot.privileged(tactile=True, num_points=100)
        assert priv["priv_info"].shape == (2, 61) and priv["point_cloud"].shape == (2, 100, 3)
        assert robot.privileged(tactile=False, num_points=100)["priv_info"].shape == (2, 29)
        # Layout of the task's vector: pen position first, then scale, mass, friction.
        np.testing.assert_allclose(priv["priv_info"][:, :3], robot.pen_pos(), atol=1e-6)
        np.testing.assert_allclose(priv["priv_info"][:, 4], [0.0150, 0.0240], atol=1e-6)
        # Every cloud point lies on its pen: within half a length of the centre.
        dist = (priv["point_cloud"] - torch.from_numpy(robot.pen_pos()).float()[:, None]).norm(-1)
        assert dist.max() <= robot.pen_length.max() / 2 + 1e-4
        oracle = load_policy(Path(__file__).resolve().parents[1] / "checkpoints" / "oracle.pt")
        ctrl = PolicyController(oracle.act, oracle.task.action_scale,
                                privileged_fn=lambda r: r.privileged(True, 100))
        judge = PoseJudge(robot)
        log = run_trial(robot, ctrl, start, 10, judge)
        assert log.steps == 10 and np.isfinite(log.target).all()
        assert not np.allclose(log.target[:, -1], start.target)  # the oracle moved the fingers
