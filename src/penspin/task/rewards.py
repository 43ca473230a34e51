"""PenSpin's reward: spin about +z, stay level and in place, and do it gently."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from penspin.task.config import RewardConfig


@dataclass
class RewardTerms:
    angvel: torch.Tensor  # (N, 3) world-frame pen angular velocity (finite difference)
    linvel: torch.Tensor  # (N, 3) pen linear velocity (finite difference)
    q: torch.Tensor  # (N, 16) joint positions
    init_q: torch.Tensor  # (N, 16) this episode's starting grasp
    torque: torch.Tensor  # (N, 16) actuator torques of the last substep
    qvel: torch.Tensor  # (N, 16) joint velocities of the last substep
    points_z: torch.Tensor  # (N, P) heights of the pen points (or of its two ends)
    pen_pos: torch.Tensor  # (N, 3)


def compute_reward(t: RewardTerms, cfg: RewardConfig, axis: torch.Tensor,
                   pos_target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-env reward and the batch means of every term (for logging)."""
    spin = t.angvel @ axis
    rotate = spin.clamp(cfg.angvel_clip_min, cfg.angvel_clip_max)
    over_speed = (spin - cfg.angvel_penalty_threshold).clamp_min(0.0)
    linvel = t.linvel.abs().sum(-1)
    pose_diff = ((t.q - t.init_q) ** 2).sum(-1)
    torque = (t.torque**2).sum(-1)
    work = ((t.torque.abs() * t.qvel.abs()).sum(-1)) ** 2
    spread = t.points_z.max(-1).values - t.points_z.min(-1).values
    z_dist = torch.where(spread > cfg.z_dist_threshold, spread, torch.zeros_like(spread))
    position = ((t.pen_pos - pos_target) ** 2).sum(-1)
    terms = {
        "rotate": (cfg.rotate, rotate),
        "rotate_penalty": (cfg.rotate_penalty, over_speed),
        "linvel_penalty": (cfg.linvel_penalty, linvel),
        "pose_diff_penalty": (cfg.pose_diff_penalty, pose_diff),
        "torque_penalty": (cfg.torque_penalty, torque),
        "work_penalty": (cfg.work_penalty, work),
        "z_dist_penalty": (cfg.z_dist_penalty, z_dist),
        "position_penalty": (cfg.position_penalty, position),
    }
    reward = torch.zeros_like(spin)
    for scale, value in terms.values():
        if scale:
            reward = reward + scale * value
    # 0-d tensors on the env's device: reading them would stall a GPU every step.
    log = {f"reward/{k}": v.mean() for k, (_, v) in terms.items()}
    log["reward/total"] = reward.mean()
    log["rotation_speed"] = spin.mean()
    return reward, log
