"""The proxy-real hand: the training scene with dynamics the policies never trained on.

There is no Allegro hand on our machines, so steps 3 and 4 are measured on this world. It starts
from what differs on the original's real setup and scales every difference by one ``severity``
knob (0: the training world's nominal dynamics, 1: the calibrated default):

- the loop runs at 18 Hz instead of 20 (11 physics steps of 5.05 ms per command);
- commands arrive ``latency`` late (the first substeps still track the previous target);
- PD gains of a real driver: Kp and Kd off the training ranges, fixed per joint per trial;
- joint dry friction (``frictionloss``), which the training scene omits;
- joint readings with a per-trial calibration offset and per-reading noise;
- the pen placed by hand: a position and yaw error on the start pose, then a short hold;
- real objects (:data:`PROXY_PENS`): masses up to 2.5x the training range, frictions at and below
  its lower edge; three pens to collect replays on, seven never used for data.

Many trials run side by side (``num_hands``), stepped by the CPU backend in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch

from penspin.config import ConfigError
from penspin.robot.interface import CameraFrame, HandRobot, StartState
from penspin.robot.safety import SafetyLimits
from penspin.sim.allegro import NUM_JOINTS
from penspin.sim.cpu_backend import CpuBackend
from penspin.task.rotations import angular_velocity, quat_mul, quat_to_matrix


@dataclass(frozen=True)
class ProxyPen:
    """A real object in the proxy world. ``role``: 'collect' (replays) or 'unseen'."""

    name: str
    length: float  # m, end to end
    radius: float  # m, where held
    mass: float  # kg
    friction: float
    role: str


# The paper's ten objects span 10.8-49.7 g, 14.4-22.2 cm and 27-38 mm where held. Masses are kept;
# lengths and thicknesses are mapped into what the grasp cache (and so the oracle's trajectories)
# covers, 11.5-16.2 cm and 21-25 mm at length/diameter 5-6.5, so every pen has matching simulated
# start states.
PROXY_PENS = (
    ProxyPen("marker", 0.140, 0.0118, 0.0150, 0.60, "collect"),
    ProxyPen("pencil", 0.125, 0.0106, 0.0108, 0.35, "collect"),
    ProxyPen("highlighter", 0.130, 0.0122, 0.0240, 0.80, "collect"),
    ProxyPen("ballpoint", 0.115, 0.0104, 0.0120, 0.30, "unseen"),
    ProxyPen("gel-pen", 0.135, 0.0110, 0.0160, 0.45, "unseen"),
    ProxyPen("fountain-pen", 0.145, 0.0120, 0.0320, 0.50, "unseen"),
    ProxyPen("brush", 0.150, 0.0118, 0.0130, 0.25, "unseen"),
    ProxyPen("whiteboard-marker", 0.150, 0.0124, 0.0290, 0.70, "unseen"),
    ProxyPen("screwdriver", 0.160, 0.0122, 0.0497, 0.40, "unseen"),
    ProxyPen("paper-tube", 0.162, 0.0126, 0.0110, 0.30, "unseen"),
)
PENS_BY_NAME = {p.name: p for p in PROXY_PENS}


def pens_named(spec: str) -> list[ProxyPen]:
    """'all', 'collect', 'unseen' or comma-separated pen names."""
    if spec in ("all", "collect", "unseen"):
        return [p for p in PROXY_PENS if spec == "all" or p.role == spec]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in PENS_BY_NAME]
    if unknown or not names:
        raise ConfigError(f"unknown proxy pen(s) {unknown or spec!r}; choose 'all', 'collect', "
                          f"'unseen' or names from {sorted(PENS_BY_NAME)}")
    return [PENS_BY_NAME[n] for n in names]


@dataclass(frozen=True)
class ProxyConfig:
    """The dynamics shift at ``severity`` 1; every entry below scales linearly with it."""

    severity: float = 1.0  # scales the whole dynamics shift (0: training world)
    control_hz: float = 18.0  # the original's real loop (rospy.Rate(18)); training: 20
    latency: float = 0.015  # s from command to actuation
    kp_scale: float = 0.75  # driver Kp relative to the training nominal 3 (range 2.5-3.5)
    kd_scale: float = 1.6  # driver Kd relative to 0.1 (range 0.09-0.11)
    gain_spread: float = 0.1  # per-joint relative spread of the driver gains
    frictionloss: float = 0.02  # N m of joint dry friction (PenSpin's sim used 0.01)
    reading_offset: float = 0.015  # rad, per-trial calibration error of each joint reading
    reading_noise: float = 0.005  # rad, per-reading noise
    placement_pos: float = 0.004  # m, uniform error of the pen's placed position
    placement_yaw: float = 0.15  # rad, uniform error of the pen's placed yaw
    hold_seconds: float = 0.5  # s the hand holds its start targets while the pen settles
    touch_threshold: float = 0.05  # N
    seed: int = 0  # driver gains, reading offsets, placements per trial

    def check(self) -> None:
        if self.severity < 0:
            raise ConfigError(f"proxy severity must be >= 0, got {self.severity}")
        if not 1.0 <= self.control_hz <= 200.0:
            raise ConfigError(f"proxy control_hz must be in [1, 200], got {self.control_hz}")

    def at(self, nominal: float, shifted: float) -> float:
        return nominal + self.severity * (shifted - nominal)


TRAIN_HZ, TRAIN_KP, TRAIN_KD, PHYSICS_DT = 20.0, 3.0, 0.1, 0.005


class ProxyRobot(HandRobot):
    """``num_hands`` simulated Allegro hands, each with its own pen and its own driver errors."""

    has_touch = True
    has_camera = True

    def __init__(self, pens: list[ProxyPen], cfg: ProxyConfig = ProxyConfig(),
                 limits: SafetyLimits | None = None, num_threads: int = 2,
                 camera_size: tuple[int, int] = (160, 120)):
        cfg.check()
        self.num_hands = n = len(pens)
        if n < 1:
            raise ConfigError("the proxy needs at least one pen (one per hand)")
        self.cfg = cfg
        self.pens = list(pens)
        self.control_hz = cfg.at(TRAIN_HZ, cfg.control_hz)
        self.substeps = max(1, round(1.0 / (self.control_hz * PHYSICS_DT)))
        self.dt = 1.0 / self.control_hz
        super().__init__(limits)
        self.rng = np.random.default_rng(cfg.seed)
        self.backend = CpuBackend(n, self.substeps, num_threads, self.dt / self.substeps)
        self.layout = self.backend.layout
        self.latency_steps = min(self.substeps,
                                 round(cfg.at(0.0, cfg.latency) / (self.dt / self.substeps)))
        self._set_driver_and_pens()
        self.target = np.zeros((n, NUM_JOINTS))
        self.applied = np.zeros((n, NUM_JOINTS))
        self.offset = np.zeros((n, NUM_JOINTS))
        self.diverged = np.zeros(n, dtype=bool)
        self.pen_angvel = np.zeros((n, 3))
        self.camera_size = camera_size
        self._camera = None
        self._template: tuple[torch.Tensor, torch.Tensor] | None = None
        self._probe = mujoco.MjData(self.backend.model)

    def _set_driver_and_pens(self) -> None:
        cfg, n, rng = self.cfg, self.num_hands, self.rng
        spread = 1 + rng.uniform(-1, 1, (2, n, NUM_JOINTS)) * cfg.at(0.0, cfg.gain_spread)
        kp = cfg.at(TRAIN_KP, TRAIN_KP * cfg.kp_scale) * spread[0]
        kd = cfg.at(TRAIN_KD, TRAIN_KD * cfg.kd_scale) * spread[1]
        ids = np.arange(n)
        self.backend.set_pd_gains(ids, kp, kd)
        friction = cfg.at(0.0, cfg.frictionloss)
        for m in self.backend.models:
            m.dof_frictionloss[:NUM_JOINTS] = friction
        p = self.pens
        self.pen_length = np.array([x.length for x in p])
        self.pen_radius = np.array([x.radius for x in p])
        self.backend.set_pen(ids, self.pen_radius, self.pen_length, np.array([x.mass for x in p]),
                             np.zeros((n, 3)), np.array([x.friction for x in p]), np.ones(n))

    # HandRobot hooks ---------------------------------------------------------------------------
    def _start(self, start: StartState | None) -> np.ndarray:
        if start is None:
            raise ConfigError("the proxy needs a start state (hand pose and pen pose) per hand")
        cfg, n = self.cfg, self.num_hands
        yaw = self.rng.uniform(-1, 1, n) * cfg.at(0.0, cfg.placement_yaw)
        spin = np.stack([np.cos(yaw / 2), np.zeros(n), np.zeros(n), np.sin(yaw / 2)], 1)
        quat = _np(quat_mul, spin, start.pen_quat)
        pos = np.asarray(start.pen_pos, dtype=np.float64) + self.rng.uniform(
            -1, 1, (n, 3)) * cfg.at(0.0, cfg.placement_pos) * np.array([1.0, 1.0, 0.25])
        qpos = np.concatenate([start.q, pos, quat], 1)
        self.backend.set_qpos_qvel(np.arange(n), qpos, np.zeros((n, self.layout.nv)))
        self.target[:] = start.target
        self.applied[:] = start.target
        self.offset = self.rng.normal(0.0, 1.0, (n, NUM_JOINTS)) * cfg.at(0.0, cfg.reading_offset)
        self.diverged[:] = False
        for _ in range(round(cfg.hold_seconds * self.control_hz)):
            self._tick()
        return self._read()

    def _read(self) -> np.ndarray:
        noise = self.rng.normal(0.0, 1.0, (self.num_hands, NUM_JOINTS))
        return self.backend.qpos.numpy()[:, :NUM_JOINTS] + self.offset + noise * self.cfg.at(
            0.0, self.cfg.reading_noise)

    def _command(self, targets: np.ndarray) -> None:
        self.target = np.array(targets, dtype=np.float64)

    def _tick(self) -> None:
        k = self.latency_steps
        ctrl = self.backend.ctrl.numpy()
        ctrl[:, :k] = self.applied[:, None]
        ctrl[:, k:] = self.target[:, None]
        self.applied = self.target.copy()
        self.backend.qfrc[:] = 0.0
        before = self.backend.state.copy()
        quat_prev = self.pen_quat()
        self.backend.step()
        bad = self.backend.diverged.numpy()
        if bad.any():
            # MuJoCo reset these to qpos0; keep their last sane state and count the trial lost.
            self.backend.state[bad] = before[bad]
            self.diverged |= bad
        self.pen_angvel = _np(lambda a, b: angular_velocity(a, b, self.dt), self.pen_quat(),
                             quat_prev)

    # Extras a real hand has (touch, camera) and one it has not (the pen's true pose) -----------
    def touch(self) -> np.ndarray:
        return (self.backend.sensordata.numpy()[:, self.layout.touch]
                >= self.cfg.touch_threshold).astype(np.float32)

    def camera(self, rgb: bool = True) -> CameraFrame:
        from penspin.robot.camera import SceneCamera

        if self._camera is None:
            w, h = self.camera_size
            self._camera = SceneCamera(self.backend.model, width=w, height=h)
        frames = [self._camera.render(*self._posed(i), rgb=rgb) for i in range(self.num_hands)]
        colour, depth, mask, fovy, pos, rot = zip(*frames, strict=True)
        return CameraFrame(np.stack(colour) if rgb else None, np.stack(depth), np.stack(mask),
                           fovy[0], pos[0], rot[0])

    def _posed(self, i: int) -> tuple[mujoco.MjModel, mujoco.MjData]:
        m, d = self.backend.models[i], self._probe
        mujoco.mj_setState(m, d, self.backend.host_state(i), mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(m, d)
        return m, d

    def privileged(self, tactile: bool, num_points: int) -> dict[str, torch.Tensor]:
        """The oracle's privileged inputs from the true state (only a simulated hand has them):
        the task's 61-d vector (29 without touch) and its pen point cloud."""
        from penspin.task.env import pen_points, pen_template
        from penspin.task.grasps import BASE_RADIUS

        if self._template is None or len(self._template[0]) != num_points:
            self._template = pen_template(num_points, torch.Generator().manual_seed(0))
        f = lambda x: torch.from_numpy(np.asarray(x, dtype=np.float32))  # noqa: E731
        n = self.num_hands
        pos, quat = f(self.pen_pos()), f(self.pen_quat())
        mass, friction = f([p.mass for p in self.pens]), f([p.friction for p in self.pens])
        priv = [pos, f(self.pen_radius / BASE_RADIUS)[:, None], mass[:, None], friction[:, None],
                torch.zeros(n, 3), quat, f(self.pen_angvel), f(self.fingertips()),
                torch.zeros(n, 1)]  # restitution analogue 0: the proxy's contacts damp fully
        if tactile:
            priv.append(f(self.touch()))
        points = pen_points(*self._template, f(self.pen_radius), f(self.pen_length), quat, pos)
        return {"priv_info": torch.cat(priv, 1), "point_cloud": points}

    def pen_pos(self) -> np.ndarray:
        return self.backend.qpos.numpy()[:, self.layout.pen_qpos][:, :3].copy()

    def pen_quat(self) -> np.ndarray:
        return self.backend.qpos.numpy()[:, self.layout.pen_qpos][:, 3:].copy()

    def pen_ends(self) -> np.ndarray:
        """World positions of both ends of each pen, [n, 2, 3]."""
        axis = _np(quat_to_matrix, self.pen_quat())[..., 2]
        off = axis * (self.pen_length / 2)[:, None]
        pos = self.pen_pos()
        return np.stack([pos + off, pos - off], 1)

    def fingertips(self) -> np.ndarray:
        return self.backend.sensordata.numpy()[:, self.layout.tip_pos].copy()

    def _stop(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        self.backend.close()

    def describe(self) -> dict:
        """The shift actually applied, for logs and result files."""
        cfg = self.cfg
        return {
            "severity": cfg.severity, "control_hz": self.control_hz, "substeps": self.substeps,
            "latency_s": self.latency_steps * self.dt / self.substeps,
            "kp": cfg.at(TRAIN_KP, TRAIN_KP * cfg.kp_scale),
            "kd": cfg.at(TRAIN_KD, TRAIN_KD * cfg.kd_scale),
            "frictionloss": cfg.at(0.0, cfg.frictionloss),
            "reading_offset": cfg.at(0.0, cfg.reading_offset),
            "reading_noise": cfg.at(0.0, cfg.reading_noise),
            "placement_pos": cfg.at(0.0, cfg.placement_pos),
            "placement_yaw": cfg.at(0.0, cfg.placement_yaw),
            "pens": sorted({p.name for p in self.pens}),
        }


def _np(fn, *arrays: np.ndarray) -> np.ndarray:
    """Apply a torch rotation helper to float64 numpy arrays."""
    tensors = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)) for x in arrays)
    return fn(*tensors).numpy()
