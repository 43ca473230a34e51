"""``Ros2Robot``: one real Allegro hand driven over ROS 2 topics (rclpy).

It publishes joint targets and subscribes to joint states, as the original's real-world loop
does. It has not been run against hardware from this repository; the safety guard in
:class:`~penspin.robot.interface.HandRobot` bounds every target it sends.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from penspin.config import ConfigError, UserFacingError
from penspin.robot.interface import HandRobot, StartState
from penspin.robot.joint_order import from_hardware, to_hardware
from penspin.robot.safety import SafetyError, SafetyLimits
from penspin.sim.allegro import NUM_JOINTS, REAL_INIT_QPOS

_NO_RCLPY = (
    "ROS 2 (rclpy) is not installed in this Python environment. Source a ROS 2 setup first, e.g."
    " `source /opt/ros/humble/setup.bash` (or /opt/ros/jazzy/setup.bash), and run penspin from"
    " that shell with a Python that can import rclpy; or use `--robot proxy` to run without"
    " hardware."
)


@dataclass(frozen=True)
class Ros2Config:
    command_topic: str = "/cmd_joint_states"
    state_topic: str = "/joint_states_pub"
    # "pkg/msg/Type"; targets go out in ``position`` and readings come from ``position``.
    message_type: str = "sensor_msgs/msg/JointState"
    control_hz: float = 18.0  # the original's real-world loop rate
    joint_order: str = "hardware"  # order on the topics: "hardware" (driver) or "penspin"
    node_name: str = "penspin_hand"
    start_seconds: float = 3.0  # how long the move to the start pose takes
    state_timeout: float = 5.0  # how long to wait for the driver's first joint state
    qos_depth: int = 10

    def check(self) -> None:
        if self.joint_order not in ("hardware", "penspin"):
            raise ConfigError(
                f"ros2 joint_order must be 'hardware' or 'penspin', got {self.joint_order!r}"
            )
        if len(self.message_type.split("/")) != 3:
            raise ConfigError(
                f"ros2 message_type must look like 'pkg/msg/Type', got {self.message_type!r}"
            )
        if not self.control_hz > 0:
            raise ConfigError(f"ros2 control_hz must be > 0, got {self.control_hz}")
        if self.start_seconds < 0 or not self.state_timeout > 0:
            raise ConfigError("ros2 start_seconds must be >= 0 and state_timeout > 0")
        if self.qos_depth < 1:
            raise ConfigError(f"ros2 qos_depth must be >= 1, got {self.qos_depth}")


def _message_class(message_type: str) -> type:
    """Import e.g. ``sensor_msgs/msg/JointState`` as ``sensor_msgs.msg.JointState``."""
    pkg, sub, name = message_type.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{sub}"), name)
    except (ImportError, AttributeError) as exc:
        raise UserFacingError(
            f"cannot import ROS 2 message type {message_type!r} ({exc}); is its package built"
            " and sourced?"
        ) from exc


class Ros2Robot(HandRobot):
    """One Allegro hand; ``input_fn`` asks the person to place the pen (tests inject it)."""

    def __init__(
        self,
        config: Ros2Config | None = None,
        limits: SafetyLimits | None = None,
        input_fn: Callable[[str], str] = input,
    ):
        self.config = config or Ros2Config()
        self.config.check()
        try:
            import rclpy
        except ImportError as exc:
            raise UserFacingError(_NO_RCLPY) from exc
        self.control_hz = self.config.control_hz
        super().__init__(limits)
        self._rclpy = rclpy
        self._input = input_fn
        self._msg = _message_class(self.config.message_type)
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self._node = rclpy.create_node(self.config.node_name)
        self._pub = self._node.create_publisher(
            self._msg, self.config.command_topic, self.config.qos_depth
        )
        self._node.create_subscription(
            self._msg, self.config.state_topic, self._on_state, self.config.qos_depth
        )
        self._latest: np.ndarray | None = None
        self._stamp: float | None = None
        self._deadline = time.monotonic()

    def _on_state(self, msg) -> None:
        self._latest = np.asarray(msg.position, dtype=np.float64)
        self._stamp = time.monotonic()

    def _start(self, start: StartState | None) -> np.ndarray:
        wait_until = time.monotonic() + self.config.state_timeout
        while self._latest is None:
            if time.monotonic() > wait_until:
                raise UserFacingError(
                    f"no joint state on {self.config.state_topic} within"
                    f" {self.config.state_timeout} s: is the Allegro driver running and"
                    f" publishing {self.config.message_type}?"
                )
            self._rclpy.spin_once(self._node, timeout_sec=0.1)
        q0 = self.read()
        goal = REAL_INIT_QPOS[None] if start is None else np.asarray(start.target)
        # Enough steps to take start_seconds, and enough that none exceeds the guard's max_step.
        steps = max(
            1,
            math.ceil(self.config.start_seconds * self.control_hz),
            math.ceil(np.abs(goal - q0).max() / self.guard.limits.max_step),
        )
        self.guard.reset(q0)
        self._deadline = time.monotonic()
        for k in range(1, steps + 1):
            self.command(q0 + (goal - q0) * (k / steps))
            self.tick()
            self.read()
        self._input("Place the pen in the hand, then press Enter to start. ")
        # Restart the clock after the wait and take in the states that arrived meanwhile.
        self._deadline = time.monotonic()
        self._tick()
        return self._read()

    def _read(self) -> np.ndarray:
        if self._latest is None:
            raise SafetyError(f"no joint state received yet on {self.config.state_topic}")
        if self._latest.shape != (NUM_JOINTS,):
            raise SafetyError(
                f"{self.config.state_topic} carries {self._latest.size} positions, expected"
                f" {NUM_JOINTS}"
            )
        hardware = self.config.joint_order == "hardware"
        return (from_hardware(self._latest) if hardware else self._latest)[None]

    def _reading_time(self) -> float | None:
        return self._stamp

    def _command(self, targets: np.ndarray) -> None:
        q = targets[0]
        msg = self._msg()
        msg.position = (to_hardware(q) if self.config.joint_order == "hardware" else q).tolist()
        self._pub.publish(msg)

    def _tick(self) -> None:
        """Spin the node (so state callbacks run) until the next step of a fixed-rate clock."""
        self._deadline += 1.0 / self.control_hz
        now = time.monotonic()
        if self._deadline < now:  # fell behind: restart the clock rather than rush to catch up
            self._deadline = now
        while True:
            left = self._deadline - time.monotonic()
            self._rclpy.spin_once(self._node, timeout_sec=max(0.0, left))
            if left <= 0:
                return

    def _stop(self) -> None:
        if self._node is None:
            return
        try:
            self.command(self.read())  # hold where the hand is
        except SafetyError:
            pass  # no trustworthy reading: the driver keeps holding the last target
        self._node.destroy_node()
        self._node = None
        if self._owns_context:
            self._rclpy.shutdown()
