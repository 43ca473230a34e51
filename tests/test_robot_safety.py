"""Joint order, the safety guard and the robot backends that need no hardware."""

import sys
import time
import types

import numpy as np
import pytest
import torch

from penspin.config import ConfigError, UserFacingError
from penspin.robot.fake import FakeRobot
from penspin.robot.interface import StartState
from penspin.robot.joint_order import (
    from_hardware,
    tips_from_hardware,
    tips_to_hardware,
    to_hardware,
)
from penspin.robot.ros2 import Ros2Config, Ros2Robot
from penspin.robot.safety import SafetyError, SafetyGuard, SafetyLimits
from penspin.sim.allegro import JOINT_LOWER, JOINT_UPPER, REAL_INIT_QPOS

LIMITS = SafetyLimits()


# Joint order ------------------------------------------------------------------------------------
def test_joint_order_round_trip_numpy_and_torch():
    x = np.random.default_rng(0).normal(size=(3, 16))
    np.testing.assert_array_equal(from_hardware(to_hardware(x)), x)
    np.testing.assert_array_equal(to_hardware(from_hardware(x)), x)
    t = torch.from_numpy(x)
    assert torch.equal(from_hardware(to_hardware(t)), t)
    np.testing.assert_array_equal(to_hardware(t).numpy(), to_hardware(x))
    tips = np.arange(24.0).reshape(2, 12)
    np.testing.assert_array_equal(tips_from_hardware(tips_to_hardware(tips)), tips)
    assert torch.equal(tips_to_hardware(torch.from_numpy(tips)),
                       torch.from_numpy(tips_to_hardware(tips)))


def test_joint_order_known_permutation():
    hw = to_hardware(np.arange(16))
    # penspin index, thumb, middle, ring -> hardware index, middle, ring, thumb
    np.testing.assert_array_equal(hw, [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7])
    np.testing.assert_array_equal(hw[12:16], [4, 5, 6, 7])
    tips = tips_to_hardware(np.arange(12))
    np.testing.assert_array_equal(tips, [0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 4, 5])
    with pytest.raises(ValueError, match="16"):
        to_hardware(np.zeros(15))


# SafetyGuard ------------------------------------------------------------------------------------
def test_guard_clamps_to_limits_then_bounds_each_step():
    guard = SafetyGuard(LIMITS, num_hands=2)
    wild = np.stack([JOINT_UPPER + 1.0, JOINT_LOWER - 1.0])
    np.testing.assert_allclose(guard.filter_target(wild), np.stack([JOINT_UPPER, JOINT_LOWER]))

    mid = np.tile((JOINT_LOWER + JOINT_UPPER) / 2, (2, 1))
    guard.reset(mid)
    sent = guard.filter_target(wild)
    assert np.abs(sent - mid).max() == pytest.approx(LIMITS.max_step)
    small = sent + 0.01
    np.testing.assert_allclose(guard.filter_target(small), small)  # within bounds: unchanged
    assert sent.dtype == np.float64


def test_guard_refuses_non_finite_targets_and_bad_shapes():
    guard = SafetyGuard(LIMITS, num_hands=1)
    for bad in (np.nan, np.inf, -np.inf):
        target = REAL_INIT_QPOS[None].copy()
        target[0, 5] = bad
        with pytest.raises(SafetyError, match="hand 0 thumb_1"):
            guard.filter_target(target)
    with pytest.raises(SafetyError, match=r"shape \(1, 16\)"):
        guard.filter_target(np.zeros((2, 16)))
    with pytest.raises(SafetyError, match="shape"):
        guard.check_reading(np.zeros(16), None)


def test_guard_reading_out_of_range_or_stale_aborts():
    guard = SafetyGuard(LIMITS, num_hands=2)
    q = np.tile(REAL_INIT_QPOS, (2, 1))
    np.testing.assert_array_equal(guard.check_reading(q, time.monotonic()), q)
    q[1, 8] = JOINT_UPPER[8] + LIMITS.reading_margin + 0.01
    with pytest.raises(SafetyError, match="hand 1 middle_0"):
        guard.check_reading(q, None)
    stale = time.monotonic() - 2 * LIMITS.stale_after
    with pytest.raises(SafetyError, match="old"):
        guard.check_reading(np.tile(REAL_INIT_QPOS, (2, 1)), stale)
    with pytest.raises(SafetyError, match="not finite"):
        guard.check_reading(np.full((2, 16), np.nan), None)


def test_limits_check_rejects_bad_values():
    for bad in (SafetyLimits(max_step=0), SafetyLimits(stale_after=-1),
                SafetyLimits(lower=(0.0,) * 15), SafetyLimits(upper=tuple(JOINT_LOWER.tolist()))):
        with pytest.raises(ConfigError):
            bad.check()


# FakeRobot --------------------------------------------------------------------------------------
def test_fake_robot_through_public_api():
    start = StartState(q=np.tile(REAL_INIT_QPOS, (2, 1)), target=np.tile(REAL_INIT_QPOS, (2, 1)),
                       pen_pos=np.zeros((2, 3)), pen_quat=np.tile([1.0, 0, 0, 0], (2, 1)))
    with FakeRobot(num_hands=2, control_hz=10.0) as robot:
        assert robot.control_hz == 10.0
        q = robot.start(start)
        np.testing.assert_array_equal(q, start.q)
        goal = q + 0.1
        for _ in range(5):
            sent = robot.command(goal)
            robot.tick()
        np.testing.assert_allclose(sent, goal)
        assert np.abs(robot.read() - goal).max() < 0.01  # the lag has closed in on the target
        assert robot.command(q + 1.0)[0, 0] == pytest.approx(goal[0, 0] + LIMITS.max_step)
        assert len(robot.sent) == 6
    assert robot.stopped


def test_fake_robot_nan_or_stale_reading_aborts_and_stops():
    with pytest.raises(SafetyError, match="not finite"), FakeRobot(fail_after=2) as robot:
        robot.start()
        for _ in range(3):
            robot.read()
            robot.tick()
    assert robot.stopped and robot.reads == 3
    with pytest.raises(SafetyError, match="old"), FakeRobot(stale=True) as robot:
        robot.start()


# Ros2Robot --------------------------------------------------------------------------------------
def test_ros2_without_rclpy_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rclpy", None)
    with pytest.raises(UserFacingError, match="rclpy") as info:
        Ros2Robot()
    assert "--robot proxy" in str(info.value) and "setup.bash" in str(info.value)


class _JointState:
    position: list


def _fake_ros(monkeypatch, state_hw):
    """A stand-in rclpy whose driver echoes each command back as the next joint state."""
    published = []
    pending = [state_hw]

    class Node:
        def create_publisher(self, msg_type, topic, depth):
            return types.SimpleNamespace(publish=lambda msg: (published.append(msg.position),
                                                              pending.append(msg.position)))

        def create_subscription(self, msg_type, topic, callback, depth):
            self.callback = callback

        def destroy_node(self):
            self.destroyed = True

    def spin_once(node, timeout_sec):
        if pending:
            node.callback(types.SimpleNamespace(position=pending.pop(0)))

    rclpy = types.SimpleNamespace(ok=lambda: True, create_node=lambda name: Node(),
                                  spin_once=spin_once)
    monkeypatch.setitem(sys.modules, "rclpy", rclpy)
    monkeypatch.setitem(sys.modules, "fake_msgs.msg", types.SimpleNamespace(State=_JointState))
    return published


def test_ros2_start_moves_smoothly_in_hardware_order_and_holds_on_stop(monkeypatch):
    q0 = REAL_INIT_QPOS.copy()
    q0[5:8] += 0.4  # thumb away from the start pose, within its limits
    published = _fake_ros(monkeypatch, to_hardware(q0).tolist())
    prompts = []
    config = Ros2Config(message_type="fake_msgs/msg/State", control_hz=500.0, start_seconds=0.01)
    with Ros2Robot(config, input_fn=prompts.append) as robot:
        q = robot.start()
        node = robot._node
    np.testing.assert_allclose(q[0], REAL_INIT_QPOS)
    assert len(prompts) == 1 and "pen" in prompts[0]
    sent = from_hardware(np.array(published))
    steps = np.abs(np.diff(np.vstack([q0, sent]), axis=0)).max(axis=1)
    assert len(sent) > 1 and steps.max() <= LIMITS.max_step + 1e-12
    np.testing.assert_allclose(sent[-1], REAL_INIT_QPOS)  # the hold on stop
    assert node.destroyed
