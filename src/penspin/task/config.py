"""Configuration of the pen-spinning task (numbers from PenSpin's released code unless noted)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from penspin.config import ConfigError


@dataclass(frozen=True)
class ObsConfig:
    tactile: bool = True  # 32 binary taxels in the privileged vector and the tactile history
    point_cloud: bool = True  # 100-point pen cloud (world frame)
    num_points: int = 100  # points in the pen's cloud
    history_len: int = 30  # proprio history for the student
    tactile_threshold: float = 0.05  # N
    tactile_latency: float = 0.2  # probability a taxel repeats its last reading
    tactile_dropout: float = 0.1  # probability an active taxel reads 0
    ends_noise: float = 0.01  # m, uniform noise on the pen-end positions a camera would give


@dataclass(frozen=True)
class RewardConfig:
    rotate: float = 1.0  # weight of the clipped angular velocity about +z
    angvel_clip_min: float = -0.5  # rad/s, lower clip of the rotation reward
    angvel_clip_max: float = 0.5  # rad/s, upper clip of the rotation reward
    rotate_penalty: float = -0.3  # weight of spin above the threshold
    angvel_penalty_threshold: float = 1.0  # rad/s, spin that starts the penalty
    linvel_penalty: float = -0.3  # weight of the pen's |linear velocity|
    pose_diff_penalty: float = -0.1  # weight of the squared joint distance from the start
    torque_penalty: float = -0.1  # weight of the squared joint torques
    work_penalty: float = -1.0  # weight of the squared mechanical power
    z_dist_penalty: float = -1.0  # weight of the pen points' height spread
    z_dist_threshold: float = 0.03  # m, spread above which it counts
    position_penalty: float = -0.1  # weight of the pen centre's distance from target
    position_target: tuple[float, ...] = (0.0, -0.01, 0.625)  # m, world frame
    # Added to the reward of the step the pen falls. PenSpin has none (0); a negative value
    # makes a fall cost more than the few seconds of reward a 0.99 discount still sees.
    fall_penalty: float = 0.0


@dataclass(frozen=True)
class TerminationConfig:
    min_pen_height: float = 0.595  # m: pen centre below this: dropped
    min_end_height: float = 0.56  # m: a pen end below this: dropped
    max_end_height: float = 0.71  # m: a pen end above this: dropped


@dataclass(frozen=True)
class RandomizationConfig:
    pen_scales: tuple[float, ...] = (0.28, 0.29)  # which cache rows (base scales) to start from
    pen_length: tuple[float, ...] = ()  # (low, high) m: only cache rows with such pens (replay)
    pen_radius: tuple[float, ...] = ()  # (low, high) m
    mass: tuple[float, ...] = (0.01, 0.02)  # (low, high) kg of the pen
    com: float = 0.001  # m, uniform offset of the centre of mass
    friction: tuple[float, ...] = (0.3, 3.0)  # (low, high) pen sliding friction
    # uniform (PenSpin) or arcsine: the same range with twice the density near both ends, where
    # the oracle drops most pens (docs/oracle.md); a training choice, evaluation stays uniform.
    friction_dist: str = "uniform"
    restitution: tuple[float, ...] = (0.0, 1.0)  # (low, high) pen contact bounciness
    kp: tuple[float, ...] = (2.5, 3.5)  # (low, high) N m/rad, PD stiffness per joint
    kd: tuple[float, ...] = (0.09, 0.11)  # (low, high) N m s/rad, PD damping per joint
    # (low, high) N m of joint dry friction per env; PenSpin's training has none. A calibration
    # (penspin calibrate) centres it on what a real hand's replays show.
    frictionloss: tuple[float, ...] = (0.0, 0.0)
    # (low, high) physics substeps by which a new joint target reaches the actuators (a real
    # driver's command latency); the first ones still track the previous target.
    latency_substeps: tuple[int, ...] = (0, 0)
    obs_noise_episode: float = 0.01  # rad, joint-reading offset std per episode
    obs_noise_step: float = 0.005  # rad, joint-reading noise std per step
    action_noise_episode: float = 0.01  # rad, target offset std per episode
    action_noise_step: float = 0.005  # rad, target noise std per substep
    force_scale: float = 2.0  # N per kg of pen: push magnitude
    force_prob: float = 0.25  # chance per env and control step of a new push
    force_decay: float = 0.9  # push decay per force_decay_interval
    force_decay_interval: float = 0.08  # s
    force_substeps: int = 2  # substeps per control step in which the push acts


@dataclass(frozen=True)
class TaskConfig:
    num_envs: int = 256  # envs stepped together (per rank)
    seed: int = 0  # grasps, physics parameters, noise (rank r: seed + r)
    num_threads: int = 2  # physics threads (CPU backend)
    backend: str = "cpu"  # cpu: mujoco.rollout on threads; warp: MuJoCo Warp (penspin[gpu])
    device: str = "cpu"  # where the warp backend runs: cpu or cuda[:k]
    cuda_graph: bool = True  # warp on cuda: replay one physics step as a CUDA graph
    episode_length: int = 400  # control steps (20 s)
    substeps: int = 10  # physics steps per control step
    physics_dt: float = 0.005  # s per physics step
    action_scale: float = 1.0 / 24.0  # rad of target change per unit action
    grasp_cache: str = ""  # empty: the cache shipped with the package
    obs: ObsConfig = field(default_factory=ObsConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    @property
    def control_dt(self) -> float:
        return self.substeps * self.physics_dt

    def check(self) -> None:
        if self.num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {self.num_envs}")
        if self.num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.backend not in ("cpu", "warp"):
            raise ConfigError(f"backend must be cpu or warp, got {self.backend!r}")
        if self.device != "cpu" and (self.backend != "warp" or not self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r}: only the warp backend runs on cuda[:k]")
        if self.substeps < 1 or self.physics_dt <= 0:
            raise ConfigError("substeps must be >= 1 and physics_dt > 0")
        if self.episode_length < 1:
            raise ConfigError(f"episode_length must be >= 1, got {self.episode_length}")
        if self.obs.history_len < 3:
            raise ConfigError("obs.history_len must be >= 3 (the actor reads the last 3 steps)")
        for name in ("pen_length", "pen_radius"):
            lo_hi = getattr(self.randomization, name)
            if lo_hi and (len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]):
                raise ConfigError(f"randomization.{name} must be () or (low, high), got {lo_hi}")
        if self.randomization.friction_dist not in ("uniform", "arcsine"):
            raise ConfigError("randomization.friction_dist must be uniform or arcsine, got "
                              f"{self.randomization.friction_dist!r}")
        lat = self.randomization.latency_substeps
        if len(lat) != 2 or not 0 <= lat[0] <= lat[1] <= self.substeps:
            raise ConfigError("randomization.latency_substeps must be (low, high) with 0 <= low "
                              f"<= high <= substeps ({self.substeps}), got {lat}")
        for name in ("mass", "friction", "restitution", "kp", "kd", "frictionloss"):
            lo_hi = getattr(self.randomization, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise ConfigError(f"randomization.{name} must be (low, high), got {lo_hi}")


def as_evaluated(task: TaskConfig) -> TaskConfig:
    """``task`` with training-only skews of the randomisation (``friction_dist``) reset to
    PenSpin's, so a policy trained with one is evaluated, replayed and distilled on the
    standard distribution unless asked otherwise."""
    return replace(task, randomization=replace(task.randomization, friction_dist="uniform"))
