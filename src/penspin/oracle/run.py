"""``penspin train-oracle``: build the task and the PPO trainer from one config, train, save."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from penspin.cli_support import resolve, run_dir
from penspin.config import from_dict, to_dict
from penspin.oracle.trainer import (
    CHECKPOINT_KIND,
    OracleTrainConfig,
    OracleTrainer,
    cpu_has_bf16,
)
from penspin.rl import distributed
from penspin.rl.checkpoint import load_checkpoint
from penspin.rl.ppo import PPOConfig
from penspin.rl.runner import rank_env, train_to_end
from penspin.task.calibration import calibrated_from
from penspin.task.config import ObsConfig, RandomizationConfig, TaskConfig


def fast_task() -> TaskConfig:
    """PenSpin's task with 50 pen points (not 100) and slippery and sticky pens drawn twice as
    often: with ``fast_train`` it learns to spin within an hour on 2 cores (docs/oracle.md,
    "One hour on two cores")."""
    return TaskConfig(obs=ObsConfig(num_points=50),
                      randomization=RandomizationConfig(friction_dist="arcsine"))


def fast_train() -> OracleTrainConfig:
    """PenSpin's PPO with 3 epochs per update (not 5) and the bounds loss on: with 50 points the
    update costs well below the physics instead of above it (docs/benchmarks.md), and the action
    mean stays in [-1, 1]."""
    return OracleTrainConfig(ppo=PPOConfig(mini_epochs=3, bounds_loss_coef=0.1))


@dataclass(frozen=True)
class OracleRunConfig:
    """``env.*`` configures the task; ``train.*`` the learner (``train.ppo.*``, ``.network.*``).

    Defaults depart from PenSpin in four settings (``fast_task``, ``fast_train``); PenSpin's
    own: ``env.obs.num_points=100 env.randomization.friction_dist=uniform
    train.ppo.mini_epochs=5 train.ppo.bounds_loss_coef=0``.
    Ablations: ``env.obs.tactile=false``, ``env.obs.point_cloud=false``,
    ``train.network.use_priv=false``, ``env.reward.z_dist_penalty=0``.
    """

    env: TaskConfig = field(default_factory=fast_task)
    train: OracleTrainConfig = field(default_factory=fast_train)


def build(cfg: OracleRunConfig, run_dir: str | Path) -> OracleTrainer:
    return OracleTrainer(rank_env(cfg.env), cfg.train, run_dir=run_dir,
                         resolved_config=to_dict(cfg))


def train_oracle(cfg: OracleRunConfig, run_dir: str | Path, resume: str = "") -> Path:
    """Train (or resume) an oracle to its budget; returns the run folder."""
    trainer = build(cfg, run_dir)
    train_to_end(trainer, resume, f"checkpoints in {trainer.run_dir} (best.pt, last.pt)")
    return Path(trainer.run_dir)


def main(args) -> None:
    base = OracleRunConfig()
    if getattr(args, "calibration", "") and not args.resume:
        base = dataclasses.replace(base, env=calibrated_from(base.env, args.calibration))
    if args.resume:
        # Continue with the run's own settings; overrides on the command line still apply.
        base = from_dict(OracleRunConfig, load_checkpoint(args.resume, CHECKPOINT_KIND)["config"])
    cfg = resolve(base, args)
    if cfg is None:
        return
    if args.resume and cfg.train.bf16 and not cpu_has_bf16() and "train.bf16=true" not in [
            o.lower() for o in args.overrides]:
        # A speed setting of the machine that wrote the checkpoint: emulated bf16 is far slower
        # than float32 (docs/benchmarks.md). Numerics differ by bf16 rounding only.
        distributed.print0("this CPU has no native bf16: resuming in float32 "
                           "(train.bf16=true forces it)")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bf16=False))
    train_oracle(cfg, run_dir(args, "runs/oracle"), args.resume)
