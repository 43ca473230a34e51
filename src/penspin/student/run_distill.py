"""``penspin train-student``: distil an oracle checkpoint into the proprioceptive student."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from penspin.cli_support import resolve, run_dir
from penspin.config import ConfigError, from_dict, to_dict
from penspin.oracle.trainer import CHECKPOINT_KIND as ORACLE_KIND
from penspin.oracle.trainer import load_oracle, oracle_from_payload
from penspin.rl.checkpoint import load_checkpoint
from penspin.rl.networks import OracleActorCritic
from penspin.rl.runner import rank_env, train_to_end
from penspin.student.distill import (
    CHECKPOINT_KIND,
    StudentTrainConfig,
    StudentTrainer,
)
from penspin.student.policy import evaluated_task
from penspin.task.config import TaskConfig

# PenSpin's student run doubles the joint-observation noise of the oracle run (0.01/0.005 rad):
# the student leans on the joint history the oracle never needed, so it must learn to distrust
# it. These are the original student script's absolute values.
STUDENT_OBS_NOISE = {"obs_noise_episode": 0.02, "obs_noise_step": 0.01}


@dataclass(frozen=True)
class StudentRunConfig:
    """``env.*`` configures the task; ``train.*`` the student and its learner.

    Baselines: ``--dagger`` (``train.dagger=true``) and
    ``train.input_mode=proprio-tactile|proprio-ends|proprio-tactile-ends``.
    """

    env: TaskConfig = field(default_factory=TaskConfig)
    train: StudentTrainConfig = field(default_factory=StudentTrainConfig)


def student_env(oracle_env: TaskConfig) -> TaskConfig:
    """The oracle's own task (same pens, physics, observations) with the student's obs noise.

    Starting from the oracle's env makes the oracle's inputs fit by construction; only the noise
    the student sees differs.
    """
    noise = dataclasses.replace(oracle_env.randomization, **STUDENT_OBS_NOISE)
    return dataclasses.replace(oracle_env, randomization=noise)


def default_config(oracle_payload: dict) -> StudentRunConfig:
    """Defaults for a new run: the oracle checkpoint's env (or the default task) + student noise."""
    return StudentRunConfig(env=student_env(evaluated_task(oracle_payload)))


def build(cfg: StudentRunConfig, run_dir: str | Path, oracle: OracleActorCritic,
          oracle_path: str = "") -> StudentTrainer:
    return StudentTrainer(rank_env(cfg.env), cfg.train, oracle, run_dir=run_dir,
                          resolved_config=to_dict(cfg), oracle_path=oracle_path)


def train_student(cfg: StudentRunConfig, run_dir: str | Path, oracle: OracleActorCritic,
                  oracle_path: str = "", resume: str = "") -> Path:
    """Distil (or resume distilling) a student from ``oracle``; returns the run folder."""
    trainer = build(cfg, run_dir, oracle, oracle_path)
    mode = "DAgger" if cfg.train.dagger else "behaviour cloning"
    train_to_end(trainer, resume,
                 f"{mode} student checkpoints in {trainer.run_dir} (best.pt, last.pt)")
    return Path(trainer.run_dir)


def main(args) -> None:
    if args.resume:
        # Continue with the run's own settings and oracle; command-line overrides still apply.
        payload = load_checkpoint(args.resume, CHECKPOINT_KIND)
        base = from_dict(StudentRunConfig, payload["config"])
        if args.oracle:
            oracle, oracle_path = load_oracle(args.oracle), args.oracle
        else:
            oracle, oracle_path = oracle_from_payload(payload["oracle"]), payload["oracle"]["path"]
    elif args.oracle:
        oracle_payload = load_checkpoint(args.oracle, ORACLE_KIND)
        base = default_config(oracle_payload)
        oracle, oracle_path = oracle_from_payload(oracle_payload), args.oracle
    elif args.keys:
        base, oracle, oracle_path = StudentRunConfig(env=student_env(TaskConfig())), None, ""
    else:
        raise ConfigError("train-student needs --oracle CKPT (or --resume a student checkpoint)")
    if args.dagger:
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, dagger=True))
    cfg = resolve(base, args)
    if cfg is None:
        return
    train_student(cfg, run_dir(args, "runs/student"), oracle, oracle_path, args.resume)
