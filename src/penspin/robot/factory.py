"""Build a ``HandRobot`` backend by name from one config tree (``robot.*`` overrides)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from penspin.config import ConfigError
from penspin.robot.camera import EndsPipelineConfig
from penspin.robot.interface import HandRobot
from penspin.robot.proxy import PENS_BY_NAME, ProxyConfig
from penspin.robot.ros2 import Ros2Config
from penspin.robot.safety import SafetyLimits

ROBOTS = ("proxy", "ros2")


@dataclass(frozen=True)
class RobotConfig:
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    ros2: Ros2Config = field(default_factory=Ros2Config)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    ends: EndsPipelineConfig = field(default_factory=EndsPipelineConfig)
    camera_width: int = 96  # px, the robot camera's image
    camera_height: int = 72  # px


def open_robot(kind: str, cfg: RobotConfig, pen_names: list[str] | None = None,
               seed_offset: int = 0) -> HandRobot:
    """``proxy``: one simulated hand per entry of ``pen_names``; ``ros2``: the one real hand."""
    if kind == "proxy":
        from penspin.robot.proxy import ProxyRobot

        pens = [PENS_BY_NAME[name] for name in pen_names or []]
        proxy = dataclasses.replace(cfg.proxy, seed=cfg.proxy.seed + seed_offset)
        return ProxyRobot(pens, proxy, cfg.limits,
                          camera_size=(cfg.camera_width, cfg.camera_height))
    if kind == "ros2":
        from penspin.robot.ros2 import Ros2Robot

        return Ros2Robot(cfg.ros2, cfg.limits, pen_names=pen_names, seed_offset=seed_offset)
    raise ConfigError(f"unknown robot {kind!r}; choose from {ROBOTS}")
