"""``penspin sim-hand``: the proxy-real world served over ROS 2 as an Allegro hand driver.

It subscribes to joint targets and publishes ``sensor_msgs/JointState`` on the original's topics
(``/cmd_joint_states`` in, ``/joint_states_pub`` out, hardware joint order index, middle, ring,
thumb), so ``penspin replay --robot ros2`` and ``penspin eval --robot ros2``, or a user's own ROS 2
code, can be pointed at it as at a real hand: a digital twin. Optionally it also publishes the
pen's pose (``geometry_msgs/PoseStamped``, world frame, as a motion-capture system or tracker
would) for automatic judging, and places the pen when a client sends a trial's start state on the
place topic (the person's job on a real hand).

Two stepping modes:

- ``lockstep`` (default): every accepted command advances the world one control period (1/18 s)
  and publishes the state after it, so a client at the same rate sees exactly what the in-process
  proxy gives (same seeds, same RNG draws); when no command comes for a period it republishes the
  last state (no physics), as a driver's state stream keeps flowing.
- ``realtime``: a free-running driver: a wall-clock timer steps the world one control period at
  a time with the newest accepted target and publishes the state.

Driver-side safety: a command that is not 16 finite numbers, lies outside the joint limits, or
moves a joint more than ``limits.max_step + hand.step_slack`` from both the last accepted target
and the joint's measured angle is rejected, counted and logged; the hand keeps the last accepted
target. Counts go out on ``hand.status_topic`` (JSON) once a second and on every rejection.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from penspin.config import ConfigError
from penspin.robot.interface import StartState
from penspin.robot.joint_order import from_hardware, to_hardware
from penspin.robot.proxy import PENS_BY_NAME, ProxyConfig, ProxyRobot
from penspin.robot.ros2 import import_rclpy, latched_qos
from penspin.robot.safety import SafetyLimits
from penspin.sim.allegro import HARDWARE_ORDER, JOINT_NAMES, NUM_JOINTS, REAL_INIT_QPOS

FAULTS = ("", "nan", "range", "stall")
LIMIT_TOLERANCE = 1e-6  # rad: a client's clamp to the limits lands exactly on them


@dataclass(frozen=True)
class SimHandSettings:
    command_topic: str = "/cmd_joint_states"  # joint targets in
    state_topic: str = "/joint_states_pub"  # joint states out (hardware order)
    joint_order: str = "hardware"  # order on the topics: "hardware" (driver) or "penspin"
    pen_pose_topic: str = "/penspin/pen_pose"  # "" : no pen pose (a hand without a tracker)
    place_topic: str = "/penspin/place_pen"  # "" : the pen is never placed by a client
    placed_topic: str = "/penspin/pen_placed"  # placement acknowledgements out
    status_topic: str = "/penspin/sim_hand/status"  # counters as JSON, once a second
    frame_id: str = "world"  # frame of the pen pose messages
    node_name: str = "allegro_sim_hand"  # the driver's ROS 2 node
    mode: str = "lockstep"  # "lockstep" (a step per command) or "realtime" (a wall-clock timer)
    pen: str = "marker"  # the pen in the hand until a placement names one
    step_slack: float = 0.1  # rad past limits.max_step a command may move (see the docstring)
    qos_depth: int = 10  # history depth of the topics
    seconds: float = 0.0  # s: exit after this long (0: until SIGINT/SIGTERM)
    # Fault injection for tests: after `fault_after` steps following a placement, publish NaN
    # ("nan") or out-of-range ("range") joint states, or stop publishing while alive ("stall").
    fault: str = ""
    fault_after: int = 0  # control steps after a placement before the fault

    def check(self) -> None:
        if self.joint_order not in ("hardware", "penspin"):
            raise ConfigError(f"hand.joint_order must be 'hardware' or 'penspin', got "
                              f"{self.joint_order!r}")
        if self.mode not in ("lockstep", "realtime"):
            raise ConfigError(f"hand.mode must be 'lockstep' or 'realtime', got {self.mode!r}")
        if self.pen not in PENS_BY_NAME:
            raise ConfigError(f"hand.pen {self.pen!r} is not a proxy pen; choose from "
                              f"{sorted(PENS_BY_NAME)}")
        if self.fault not in FAULTS:
            raise ConfigError(f"hand.fault must be one of {FAULTS}, got {self.fault!r}")
        if not (self.command_topic and self.state_topic):
            raise ConfigError("hand.command_topic and hand.state_topic must be set")
        if self.step_slack < 0 or self.qos_depth < 1 or self.seconds < 0:
            raise ConfigError("hand.step_slack and hand.seconds must be >= 0, qos_depth >= 1")


@dataclass(frozen=True)
class SimHandConfig:
    hand: SimHandSettings = field(default_factory=SimHandSettings)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # severity=0: the training world
    limits: SafetyLimits = field(default_factory=SafetyLimits)


class SimHand:
    """The driver node around one :class:`ProxyRobot` (rebuilt at each placement)."""

    def __init__(self, cfg: SimHandConfig, rclpy=None):
        cfg.hand.check()
        cfg.proxy.check()
        cfg.limits.check()
        self.cfg = cfg
        self.rclpy = rclpy or import_rclpy()
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        self._JointState, self._PoseStamped, self._String = JointState, PoseStamped, String
        h = cfg.hand
        self.node = self.rclpy.create_node(h.node_name)
        self.log = self.node.get_logger()
        self.lower = np.array(cfg.limits.lower) - LIMIT_TOLERANCE
        self.upper = np.array(cfg.limits.upper) + LIMIT_TOLERANCE
        self.bound = cfg.limits.max_step + h.step_slack + LIMIT_TOLERANCE
        self.names = [JOINT_NAMES[i] for i in HARDWARE_ORDER] if h.joint_order == "hardware" \
            else list(JOINT_NAMES)
        self.accepted = self.rejected = self.steps = self.placements = 0
        self.last_reject = ""
        self._pending: np.ndarray | None = None  # realtime: newest accepted target
        self._last_publish = 0.0
        self._steps_since_place = -1  # no placement yet: no fault
        self._seen: set[str] = set()
        self.robot = self._new_robot(h.pen, 0)
        self._park()

        self.state_pub = self.node.create_publisher(JointState, h.state_topic, h.qos_depth)
        self.pose_pub = (self.node.create_publisher(PoseStamped, h.pen_pose_topic, h.qos_depth)
                         if h.pen_pose_topic else None)
        self.status_pub = (self.node.create_publisher(String, h.status_topic, h.qos_depth)
                           if h.status_topic else None)
        self.node.create_subscription(JointState, h.command_topic, self._on_command, h.qos_depth)
        if h.place_topic:
            self.placed_pub = self.node.create_publisher(String, h.placed_topic,
                                                         latched_qos(self.rclpy))
            self.node.create_subscription(String, h.place_topic, self._on_place,
                                          latched_qos(self.rclpy))
        period = 1.0 / self.robot.control_hz
        self.period = period
        self.node.create_timer(period, self._on_timer)
        if self.status_pub is not None:
            self.node.create_timer(1.0, self._publish_status)
        self._publish_state()

    # World -------------------------------------------------------------------------------------
    def _new_robot(self, pen: str, seed_offset: int) -> ProxyRobot:
        proxy = dataclasses.replace(self.cfg.proxy, seed=self.cfg.proxy.seed + seed_offset)
        return ProxyRobot([PENS_BY_NAME[pen]], proxy, self.cfg.limits, num_threads=1)

    def _park(self) -> None:
        """Hand at the driver's start pose, pen held far below it until someone places it."""
        r = self.robot
        qpos = np.concatenate([REAL_INIT_QPOS, [0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0]])[None]
        r.backend.set_qpos_qvel(np.arange(1), qpos, np.zeros((1, r.layout.nv)))
        r.target[:] = REAL_INIT_QPOS
        r.applied[:] = REAL_INIT_QPOS
        self.reading = r._read()

    def _step(self, target: np.ndarray | None) -> None:
        if target is not None:
            self.robot._command(target[None])
        self.robot._tick()
        self.reading = self.robot._read()
        self.steps += 1
        if self._steps_since_place >= 0:
            self._steps_since_place += 1
        self._publish_state()

    # Callbacks ---------------------------------------------------------------------------------
    def _on_command(self, msg) -> None:
        q = np.asarray(msg.position, dtype=np.float64)
        reason = self._reject_reason(q)
        if reason:
            self.rejected += 1
            self.last_reject = reason
            self.log.warning(f"rejected command #{self.rejected}: {reason}")
            self._publish_status()
            return
        self.accepted += 1
        target = from_hardware(q) if self.cfg.hand.joint_order == "hardware" else q
        if self.cfg.hand.mode == "lockstep":
            self._step(target)
        else:
            self._pending = target

    def _reject_reason(self, q: np.ndarray) -> str:
        if q.shape != (NUM_JOINTS,):
            return f"{q.size} positions, expected {NUM_JOINTS}"
        if not np.isfinite(q).all():
            return "non-finite positions"
        if self.cfg.hand.joint_order == "hardware":
            q = from_hardware(q)
        bad = np.flatnonzero((q < self.lower) | (q > self.upper))
        if len(bad):
            j = bad[0]
            return (f"{JOINT_NAMES[j]} = {q[j]:.3f} rad outside the limits "
                    f"[{self.lower[j]:.3f}, {self.upper[j]:.3f}]")
        held = self.robot.target[0]
        measured = self.robot.backend.qpos.numpy()[0, :NUM_JOINTS]
        jump = np.minimum(np.abs(q - held), np.abs(q - measured))
        if jump.max() > self.bound:
            j = int(jump.argmax())
            return (f"{JOINT_NAMES[j]} would move {jump[j]:.3f} rad in one command "
                    f"(bound {self.bound:.3f})")
        return ""

    def _on_place(self, msg) -> None:
        try:
            req = json.loads(msg.data)
            trial_id = str(req["id"])
            if trial_id in self._seen:
                return  # a repeat of a placement already done
            pen = req.get("pen") or self.cfg.hand.pen
            if pen not in PENS_BY_NAME:
                raise ValueError(f"unknown pen {pen!r}")
            f = lambda k: np.asarray(req[k], dtype=np.float64)[None]  # noqa: E731
            start = StartState(f("q"), f("target"), f("pen_pos"), f("pen_quat"))
            if req.get("joint_order", "penspin") == "hardware":
                start.q, start.target = from_hardware(start.q), from_hardware(start.target)
            if start.q.shape != (1, NUM_JOINTS) or start.pen_quat.shape != (1, 4):
                raise ValueError("bad start state shapes")
        except (ValueError, KeyError, TypeError) as exc:
            self.log.error(f"ignored a placement request: {exc}")
            return
        self._seen.add(trial_id)
        self.robot.stop()
        self.robot = self._new_robot(pen, int(req.get("seed_offset", 0)))
        self.reading = self.robot._start(start)
        self._pending = None
        self.placements += 1
        self._steps_since_place = 0
        self._publish_state()
        done = self._String()
        done.data = json.dumps({"id": trial_id, "pen": pen})
        self.placed_pub.publish(done)

    def _on_timer(self) -> None:
        if self.cfg.hand.mode == "realtime":
            self._step(self._pending)
        elif time.monotonic() - self._last_publish >= 0.9 * self.period:
            self._publish_state()  # no command this period: the state stream keeps flowing

    # Output ------------------------------------------------------------------------------------
    def _publish_state(self) -> None:
        h = self.cfg.hand
        placed = self._steps_since_place >= 0  # faults start only after a placement
        fault = h.fault if placed and self._steps_since_place >= h.fault_after else ""
        if fault == "stall":
            return
        q = self.reading[0].copy()
        if fault == "nan":
            q[3] = math.nan
        elif fault == "range":
            q[3] = self.cfg.limits.upper[3] + 1.0
        stamp = self.node.get_clock().now().to_msg()
        msg = self._JointState()
        msg.header.stamp = stamp
        msg.name = self.names
        msg.position = (to_hardware(q) if h.joint_order == "hardware" else q).tolist()
        qvel = self.robot.backend.qvel.numpy()[0, :NUM_JOINTS]
        msg.velocity = (to_hardware(qvel) if h.joint_order == "hardware" else qvel).tolist()
        self.state_pub.publish(msg)
        if self.pose_pub is not None:
            pos, quat = self.robot.pen_pos()[0], self.robot.pen_quat()[0]
            pose = self._PoseStamped()
            pose.header.stamp = stamp
            pose.header.frame_id = h.frame_id
            p, o = pose.pose.position, pose.pose.orientation
            p.x, p.y, p.z = (float(v) for v in pos)
            o.w, o.x, o.y, o.z = (float(v) for v in quat)
            self.pose_pub.publish(pose)
        self._last_publish = time.monotonic()

    def status(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected, "steps": self.steps,
                "placements": self.placements, "last_reject": self.last_reject}

    def _publish_status(self) -> None:
        if self.status_pub is not None:
            msg = self._String()
            msg.data = json.dumps(self.status())
            self.status_pub.publish(msg)

    def close(self) -> None:
        self.robot.stop()
        self.node.destroy_node()


def main(args) -> None:
    from penspin.cli_support import resolve

    cfg = resolve(SimHandConfig(), args)
    if cfg is None:
        return
    import torch

    torch.set_num_threads(1)
    rclpy = import_rclpy()
    rclpy.init()
    hand = SimHand(cfg, rclpy)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(True))
    h = cfg.hand
    print(f"sim-hand ready: {h.mode} at {hand.robot.control_hz:g} Hz, commands on "
          f"{h.command_topic}, states on {h.state_topic} ({h.joint_order} order), pen pose on "
          f"{h.pen_pose_topic or '-'}, placements on {h.place_topic or '-'}", flush=True)
    end = time.monotonic() + h.seconds if h.seconds > 0 else math.inf
    try:
        while not stop and time.monotonic() < end:
            rclpy.spin_once(hand.node, timeout_sec=0.05)
    finally:
        print(f"sim-hand stopped: {json.dumps(hand.status())}", flush=True)
        hand.close()
        rclpy.shutdown()
