"""``Ros2Robot``: one real Allegro hand driven over ROS 2 topics (rclpy).

It publishes joint targets and subscribes to joint states, as the original's real-world loop
does; the safety guard in :class:`~penspin.robot.interface.HandRobot` bounds every target it
sends. It has not been run against hardware from this repository; it is tested over real DDS
against ``penspin sim-hand`` (:mod:`penspin.robot.sim_hand`), a simulated Allegro driver.

Optional, for unattended trials: ``pen_pose_topic`` (a tracker's ``geometry_msgs/PoseStamped`` of
the pen, world frame) lets the pose judge decide each trial as on the proxy, and ``place_topic``
hands each trial's start state to whoever places the pen (sim-hand) instead of asking the person.

rclpy comes from ``pip install penspin[ros2]`` (ROS 2 Jazzy wheels, Python 3.11) or from a
sourced ROS 2 installation.
"""

from __future__ import annotations

import importlib
import json
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
    "ROS 2 (rclpy) is not installed in this Python environment. Install the ROS 2 Jazzy wheels"
    " with `pip install 'penspin[ros2]'` (Python 3.11), or source a ROS 2 setup first, e.g."
    " `source /opt/ros/humble/setup.bash` (or /opt/ros/jazzy/setup.bash), and run penspin from"
    " that shell with a Python that can import rclpy; or use `--robot proxy` to run without"
    " hardware."
)
DEFAULT_PEN_LENGTH = 0.14  # m, for the pose judge's end heights when the pen is not named


def import_rclpy():
    """rclpy, or a :class:`UserFacingError` that says how to get it."""
    try:
        import rclpy
    except ImportError as exc:
        raise UserFacingError(_NO_RCLPY) from exc
    return rclpy


def latched_qos(rclpy):
    """Reliable, transient-local, depth 1: a late subscriber still gets the last message."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


DRAIN_S = 0.03  # s: the longest a silence check spends taking in queued messages

@dataclass(frozen=True)
class Ros2Config:
    command_topic: str = "/cmd_joint_states"  # joint targets out (the original's topic)
    state_topic: str = "/joint_states_pub"  # joint states in (the original's topic)
    # "pkg/msg/Type"; targets go out in ``position`` and readings come from ``position``.
    message_type: str = "sensor_msgs/msg/JointState"
    control_hz: float = 18.0  # the original's real-world loop rate
    joint_order: str = "hardware"  # order on the topics: "hardware" (driver) or "penspin"
    node_name: str = "penspin_hand"  # this client's ROS 2 node
    start_seconds: float = 3.0  # s the move to the start pose takes
    state_timeout: float = 5.0  # s to wait for the driver's first joint state
    qos_depth: int = 10  # history depth of the topics
    # s: no joint state for this long once running: the driver is gone, stop commanding.
    silence_timeout: float = 0.3
    # geometry_msgs/PoseStamped of the pen (world frame, a tracker or sim-hand): when set, trials
    # are judged from it as on the proxy instead of asking the person ("" : ask).
    pen_pose_topic: str = ""
    pose_timeout: float = 1.0  # s: a pen pose older than this stops the trial
    # When set, each trial's start state goes out here (std_msgs/String, JSON) for whoever places
    # the pen (sim-hand), and the trial starts on its reply on placed_topic instead of Enter.
    place_topic: str = ""
    placed_topic: str = "/penspin/pen_placed"  # where the placer acknowledges a placement

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
        if not (self.silence_timeout > 0 and self.pose_timeout > 0):
            raise ConfigError("ros2 silence_timeout and pose_timeout must be > 0 seconds")
        if self.place_topic and not self.placed_topic:
            raise ConfigError("ros2 place_topic needs placed_topic (where placements are acked)")


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
    """One Allegro hand; ``input_fn`` asks the person to place the pen (tests inject it).

    ``pen_names`` (one, the trial's pen) sets the pen length the pose judge uses and tells a
    placer which pen to place; ``seed_offset`` numbers the trial for a simulated placer."""

    def __init__(
        self,
        config: Ros2Config | None = None,
        limits: SafetyLimits | None = None,
        input_fn: Callable[[str], str] = input,
        pen_names: list[str] | None = None,
        seed_offset: int = 0,
    ):
        self.config = config or Ros2Config()
        self.config.check()
        rclpy = import_rclpy()
        self.control_hz = self.config.control_hz
        self.dt = 1.0 / self.control_hz
        super().__init__(limits)
        self.pen_name = (pen_names or [""])[0]
        self.seed_offset = seed_offset
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
        # The pen pose judge's view: latest pose received, and the one sampled each tick.
        self.has_pen_pose = bool(self.config.pen_pose_topic)
        self.diverged = np.zeros(1, dtype=bool)
        self.pen_angvel = np.zeros((1, 3))
        self._pose: np.ndarray | None = None  # [7]: x y z, w x y z
        self._pose_stamp: float | None = None
        self._sampled: np.ndarray | None = None
        if self.has_pen_pose:
            from geometry_msgs.msg import PoseStamped

            from penspin.robot.proxy import PENS_BY_NAME

            pen = PENS_BY_NAME.get(self.pen_name)
            self.pen_length = np.array([pen.length if pen else DEFAULT_PEN_LENGTH])
            self._node.create_subscription(PoseStamped, self.config.pen_pose_topic,
                                           self._on_pose, self.config.qos_depth)
        self._placed: set[str] = set()
        if self.config.place_topic:
            from std_msgs.msg import String

            self._string = String
            self._place_pub = self._node.create_publisher(
                String, self.config.place_topic, latched_qos(rclpy))
            self._node.create_subscription(String, self.config.placed_topic, self._on_placed,
                                           latched_qos(rclpy))

    def _on_state(self, msg) -> None:
        self._latest = np.asarray(msg.position, dtype=np.float64)
        self._stamp = time.monotonic()

    def _on_pose(self, msg) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        self._pose = np.array([p.x, p.y, p.z, o.w, o.x, o.y, o.z], dtype=np.float64)
        self._pose_stamp = time.monotonic()

    def _on_placed(self, msg) -> None:
        try:
            self._placed.add(str(json.loads(msg.data).get("id")))
        except (ValueError, AttributeError):
            pass  # not ours

    def _check_alive(self) -> None:
        """Raise if the joint states (or the pen poses being judged) stopped coming."""
        if any(self._stale()):
            # One spin runs one callback: after a slow stretch of our own (writing a demo, a
            # slow step) states may be waiting in the queue. Take them in (for at most one
            # DRAIN_S, which bounds how late a dead driver is noticed) before judging.
            until = time.monotonic() + DRAIN_S
            while time.monotonic() < until and any(self._stale()):
                self._rclpy.spin_once(self._node, timeout_sec=0.0)
        state, pose = self._stale()
        now = time.monotonic()
        if state:
            raise SafetyError(
                f"no joint state on {self.config.state_topic} for {now - self._stamp:.2f} s"
                f" (limit ros2.silence_timeout={self.config.silence_timeout} s), stopping: the"
                " Allegro driver stopped publishing or died"
            )
        if pose:
            raise SafetyError(
                f"no pen pose on {self.config.pen_pose_topic} for {now - self._pose_stamp:.2f} s"
                f" (limit ros2.pose_timeout={self.config.pose_timeout} s), stopping: the tracker"
                " lost the pen or stopped"
            )

    def _stale(self) -> tuple[bool, bool]:
        """(joint states stale, judged pen poses stale), against their timeouts."""
        now = time.monotonic()
        state = self._stamp is not None and now - self._stamp > self.config.silence_timeout
        pose = (self.has_pen_pose and self._pose_stamp is not None
                and now - self._pose_stamp > self.config.pose_timeout)
        return state, pose

    def _ask(self, prompt: str) -> str:
        try:
            return self._input(prompt)
        except EOFError:
            raise UserFacingError(
                "standard input closed while waiting for the person to place the pen; run"
                " interactively, or set robot.ros2.place_topic to a placer such as penspin"
                " sim-hand"
            ) from None

    def _place(self, start: StartState | None) -> None:
        """Hand the start state to the placer and wait until it says the pen is in place."""
        if start is None:
            raise ConfigError("ros2 place_topic needs a start state per trial (--trajectories)")
        trial_id = f"{time.time_ns()}-{self.seed_offset}"
        msg = self._string()
        msg.data = json.dumps({
            "id": trial_id, "pen": self.pen_name, "seed_offset": int(self.seed_offset),
            "joint_order": "penspin", "q": np.asarray(start.q)[0].tolist(),
            "target": np.asarray(start.target)[0].tolist(),
            "pen_pos": np.asarray(start.pen_pos)[0].tolist(),
            "pen_quat": np.asarray(start.pen_quat)[0].tolist(),
        })
        self._place_pub.publish(msg)
        wait_until = time.monotonic() + self.config.state_timeout
        while trial_id not in self._placed:
            if time.monotonic() > wait_until:
                raise UserFacingError(
                    f"nobody acknowledged the pen placement on {self.config.placed_topic} within"
                    f" {self.config.state_timeout} s: is penspin sim-hand (or another placer)"
                    f" listening on {self.config.place_topic}?"
                )
            self._rclpy.spin_once(self._node, timeout_sec=0.02)
        # A placer may pause the driver while it places the pen (sim-hand rebuilds its world):
        # judge the hand's liveness afresh from the states that follow the placement.
        self._latest = self._stamp = self._pose = self._pose_stamp = None
        self._wait_for_states("after the pen placement")

    def _sample_pose(self) -> None:
        """Take the newest pen pose as this step's, and its angular velocity since the last."""
        if not self.has_pen_pose:
            return
        if self._pose is None:
            raise SafetyError(f"no pen pose received on {self.config.pen_pose_topic}")
        if not np.isfinite(self._pose).all():
            raise SafetyError(f"the pen pose on {self.config.pen_pose_topic} is not finite")
        now = self._pose.copy()
        if self._sampled is not None:
            from penspin.task.rotations import angular_velocity

            self.pen_angvel = angular_velocity(torch_of(now[None, 3:]),
                                               torch_of(self._sampled[None, 3:]),
                                               self.dt).numpy()
        self._sampled = now

    # The pose judge's inputs (:class:`~penspin.robot.trial.PoseJudge`), from the pen pose topic.
    def pen_pos(self) -> np.ndarray:
        return self._sampled[None, :3].copy()

    def pen_quat(self) -> np.ndarray:
        return self._sampled[None, 3:].copy()

    def pen_ends(self) -> np.ndarray:
        """World positions of both pen ends [1, 2, 3] (the pen's axis is its local z)."""
        from penspin.task.rotations import quat_to_matrix

        axis = quat_to_matrix(torch_of(self.pen_quat())).numpy()[..., 2]
        off = axis * (self.pen_length / 2)[:, None]
        pos = self.pen_pos()
        return np.stack([pos + off, pos - off], 1)

    def _wait_for_states(self, after: str) -> None:
        """Spin until a joint state (and a pen pose, when judged) arrives after the last clear."""
        wait_until = time.monotonic() + self.config.state_timeout
        while self._latest is None or (self.has_pen_pose and self._pose is None):
            if time.monotonic() > wait_until:
                if self._latest is not None:
                    raise UserFacingError(
                        f"no pen pose on {self.config.pen_pose_topic} within"
                        f" {self.config.state_timeout} s {after}: is the tracker (or penspin"
                        " sim-hand) publishing geometry_msgs/PoseStamped there?"
                    )
                raise UserFacingError(
                    f"no joint state on {self.config.state_topic} within"
                    f" {self.config.state_timeout} s {after}: is the Allegro driver running and"
                    f" publishing {self.config.message_type}?"
                )
            self._rclpy.spin_once(self._node, timeout_sec=0.02)

    def _start(self, start: StartState | None) -> np.ndarray:
        self._wait_for_states("of the trial's start")
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
        if self.config.place_topic:
            self._place(start)
        else:
            self._ask("Place the pen in the hand, then press Enter to start. ")
        # Restart the clock after the wait and take in the states that arrived meanwhile.
        self._deadline = time.monotonic()
        self._sampled = None
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
            self._rclpy.spin_once(self._node, timeout_sec=max(0.0, min(left, 0.05)))
            self._check_alive()
            if left <= 0:
                self._sample_pose()
                return

    def _stop(self) -> None:
        if self._node is None:
            return
        try:
            self._check_alive()
            self.command(self.read())  # hold where the hand is
        except SafetyError:
            pass  # no trustworthy reading: the driver keeps holding the last target
        self._node.destroy_node()
        self._node = None
        if self._owns_context:
            self._rclpy.shutdown()


def torch_of(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
