"""``penspin train-student-rl``: finetune a distilled student with PPO and an oracle critic."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from penspin.cli_support import resolve, run_dir
from penspin.config import ConfigError, from_dict, to_dict
from penspin.oracle.trainer import load_oracle, oracle_from_payload
from penspin.rl.checkpoint import load_checkpoint, model_from_payload
from penspin.rl.networks import OracleActorCritic
from penspin.rl.runner import rank_env, train_to_end
from penspin.student.distill import CHECKPOINT_KIND
from penspin.student.network import StudentActorCritic, with_defaults
from penspin.student.rl import StudentRLConfig, StudentRLTrainer
from penspin.student.run_distill import student_env
from penspin.task.calibration import calibrated_from
from penspin.task.config import TaskConfig


@dataclass(frozen=True)
class StudentRLRunConfig:
    """``env.*`` configures the task (default: the student's own training task); ``train.*`` the
    finetuner (``train.ppo.*`` as in train-oracle)."""

    env: TaskConfig = field(default_factory=TaskConfig)
    train: StudentRLConfig = field(default_factory=StudentRLConfig)


def student_from_payload(payload: dict) -> StudentActorCritic:
    payload = {**payload, "model_args": with_defaults(payload["model_args"])}
    return model_from_payload(StudentActorCritic, payload, what="student")


def _sources(args) -> tuple[StudentRLRunConfig, StudentActorCritic, OracleActorCritic, dict]:
    """Config, student, critic oracle and where they came from, for a new or resumed run."""
    if args.resume:
        payload = load_checkpoint(args.resume, CHECKPOINT_KIND)
        if "critic" not in payload:
            raise ConfigError(f"{args.resume} is not a train-student-rl checkpoint; start from "
                              "it with --student instead")
        critic = oracle_from_payload(payload["critic"])
        return (from_dict(StudentRLRunConfig, payload["config"]), student_from_payload(payload),
                critic, payload["sources"])
    if not args.student:
        raise ConfigError("train-student-rl needs --student CKPT (a distilled student), or "
                          "--resume a train-student-rl checkpoint")
    payload = load_checkpoint(args.student, CHECKPOINT_KIND)
    if args.oracle:
        critic, oracle_path = load_oracle(args.oracle), args.oracle
    elif "oracle" in payload:  # a training checkpoint keeps its teacher
        critic, oracle_path = oracle_from_payload(payload["oracle"]), payload["oracle"]["path"]
    else:
        raise ConfigError(f"{args.student} does not hold its oracle (a released copy?): name "
                          "the critic's oracle with --oracle CKPT")
    env = from_dict(TaskConfig, payload["config"]["env"]) if "config" in payload else \
        student_env(TaskConfig())
    return (StudentRLRunConfig(env=env), student_from_payload(payload), critic,
            {"student": args.student, "oracle": oracle_path})


def train_student_rl(cfg: StudentRLRunConfig, run_dir: str | Path, student: StudentActorCritic,
                     critic: OracleActorCritic, record: dict, resume: str = "") -> Path:
    """PPO-finetune (or resume) ``student`` with ``critic``; returns the run folder."""
    trainer = StudentRLTrainer(rank_env(cfg.env), cfg.train, student, critic, run_dir=run_dir,
                               resolved_config=to_dict(cfg), record=record)
    train_to_end(trainer, resume,
                 f"finetuned student checkpoints in {Path(trainer.run_dir)} (best.pt: the best "
                 "held-out time to fall, the start included; last.pt)")
    return Path(trainer.run_dir)


def main(args) -> None:
    if args.keys and not (args.resume or args.student):
        resolve(StudentRLRunConfig(env=student_env(TaskConfig())), args)
        return
    base, student, critic, sources = _sources(args)
    if getattr(args, "calibration", "") and not args.resume:
        base = dataclasses.replace(base, env=calibrated_from(base.env, args.calibration))
        sources = {**sources, "calibration": args.calibration}
    cfg = resolve(base, args)
    if cfg is None:
        return
    train_student_rl(cfg, run_dir(args, "runs/student-rl"), student, critic, sources, args.resume)
