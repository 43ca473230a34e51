"""Reinforcement finetuning of a distilled student: PPO on its own inputs, the oracle as critic.

Behaviour cloning copies the oracle's actions but not what the oracle knows: without the pen's
pose a proprio student drops the pen after ~6 s whatever the recipe (docs/student.md). Here the
student itself is PPO's actor, so it is optimised for the return it gets from what it sees. The
critic is a copy of the oracle's network (privileged state and point cloud, needed only while
training: an asymmetric actor-critic), so it starts from the oracle's value function, and a
warm-up with the student frozen fits it to the student's own returns before the actor moves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from penspin.config import ConfigError, to_dict, validate
from penspin.oracle.trainer import PPORunner
from penspin.rl import distributed
from penspin.rl.checkpoint import CheckpointError, load_state_checked
from penspin.rl.networks import GaussianActorCritic, OracleActorCritic
from penspin.rl.ppo import PPO, PPOConfig
from penspin.rl.runner import ClosedLoopSelectionConfig, EpisodeStats, seed_everything
from penspin.student.distill import CHECKPOINT_KIND, check_oracle_fits, closed_loop
from penspin.student.network import StudentActorCritic


@dataclass
class StudentRLConfig(ClosedLoopSelectionConfig):
    """Everything the finetuner reads besides the env, the student and the critic's oracle.

    Selection is closed-loop as in distillation, with the start (iteration 0, before the student
    has moved) evaluated too, so best.pt is never worse than the student it began from.
    """

    # PenSpin's PPO, started 5x lower than the oracle's 5e-4: the actor already acts well, and
    # the adaptive schedule raises the rate within a few updates if the KL stays small.
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(learning_rate=1e-4))
    # Exploration std of the student's actions (action units); the BC data had DART noise 0.1.
    init_sigma: float = 0.1
    # Iterations with the student frozen while the critic learns the student's returns (the
    # oracle's values overrate a weaker policy's states).
    critic_warmup: int = 20
    max_env_steps: int = 5_000_000  # training budget, env steps over all ranks
    save_every: int = 20  # iterations between last.pt saves
    eval_every: int = 20  # iterations between held-out evaluations

    positive: ClassVar[tuple[str, ...]] = ("eval_every",)

    def check(self) -> None:
        super().check()
        if self.critic_warmup < 0:
            raise ConfigError(f"critic_warmup must be >= 0, got {self.critic_warmup}")
        if self.init_sigma <= 0:
            raise ConfigError(f"init_sigma must be > 0, got {self.init_sigma}")


class AsymmetricStudent(GaussianActorCritic):
    """The student's mean action with a learned std as the policy; the oracle network's value.

    Only the critic's value path trains; its action head and std are frozen and unused.
    """

    def __init__(self, student: StudentActorCritic, critic: OracleActorCritic,
                 init_sigma: float):
        super().__init__()
        self.actor = student
        self.critic = critic
        self.num_actions = student.num_actions
        self.logstd = nn.Parameter(torch.full((self.num_actions,), math.log(init_sigma)))
        self.input_shapes = {**critic.input_shapes, **student.input_shapes}
        critic.mu.requires_grad_(False)
        critic.logstd.requires_grad_(False)

    @property
    def value_rms(self):
        return self.critic.value_rms

    def _forward(self, obs_dict: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs_dict), self.critic._forward(obs_dict)[1]

    def freeze_actor(self, frozen: bool) -> None:
        """Hold the policy (student weights and std) still, e.g. while the critic warms up."""
        for p in [*self.actor.parameters(), self.logstd]:
            p.requires_grad_(not frozen)


def check_student_fits(student: StudentActorCritic, env: Any) -> None:
    """Refuse a student whose inputs the env does not produce in the shapes it was trained on."""
    problems = [f"{key}: student expects {tuple(shape)}, the env gives "
                f"{tuple(env.obs_shapes[key]) if key in env.obs_shapes else 'nothing'}"
                for key, shape in student.input_shapes.items()
                if tuple(env.obs_shapes.get(key, ())) != tuple(shape)]
    if problems:
        raise CheckpointError("the student does not fit this env: " + "; ".join(problems))


class StudentRLTrainer(PPORunner):
    """PPO finetuning of a student with an oracle critic.

    Checkpoints are student checkpoints (``model`` is the student), so ``penspin eval``,
    ``export-student`` and ``finetune`` take them as they take a distilled student's; the critic,
    the std and PPO's state ride along for ``--resume``.
    """

    kind = CHECKPOINT_KIND

    def __init__(
        self,
        env: Any,
        cfg: StudentRLConfig,
        student: StudentActorCritic,
        critic: OracleActorCritic,
        run_dir: str | Path | None = None,
        resolved_config: dict | None = None,
        record: dict | None = None,
    ):
        validate(cfg)
        check_student_fits(student, env)
        check_oracle_fits(critic, env, where="the critic's oracle")
        distributed.init()
        self.record = record or {}
        super().__init__(
            env, cfg, run_dir or Path("runs/student-rl") / time.strftime("%Y%m%d-%H%M%S"),
            resolved_config if resolved_config is not None else to_dict(cfg), record=self.record)
        seed_everything(cfg.seed + distributed.rank())
        self.agent = AsymmetricStudent(student, critic, cfg.init_sigma).to(self.device)
        self.model = self.agent.actor
        distributed.broadcast_module(self.agent)
        self.ppo = PPO(self.agent, cfg.ppo, env.num_envs, self.device)
        self.episodes = EpisodeStats(env.num_envs, cfg.reward_window, self.device)
        self.best_eval = -math.inf

    def _postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{scalars.get('episode/reward', math.nan):.2f}",
                "best_s": f"{self.best_eval:.2f}"}

    def _improved(self, scalars: dict[str, float]) -> bool:
        score = scalars.get("eval/time_to_fall_s")
        if score is None or score <= self.best_eval:
            return False
        self.best_eval = score
        return True

    def _iteration(self) -> dict[str, float]:
        warming = self.iteration < self.cfg.critic_warmup
        self.agent.freeze_actor(warming)
        stats, times = self._ppo_iteration(adapt_lr=not warming)
        scalars = self._summary({
            "loss/actor": stats["actor_loss"],
            "loss/critic": stats["critic_loss"],
            "policy/kl": stats["kl"],
            "policy/lr": stats["lr"],
            "policy/grad_norm": stats["grad_norm"],
            "policy/sigma": self.agent.logstd.detach().exp().mean(),
            "policy/critic_warmup": float(warming),
        }, *times)
        due = self.iteration == 0 or (self.iteration + 1) % self.cfg.eval_every == 0
        if due and distributed.is_rank0():
            scalars.update(closed_loop(self.model, self.env.cfg, self.cfg.eval_seed,
                                       self.cfg.eval_episodes))
            scalars["time/eval_s"] = time.perf_counter() - times[-1]
            scalars["time/iteration_s"] += scalars["time/eval_s"]
        return scalars

    def _extra_payload(self) -> dict:
        return {
            "ppo": self.ppo.state_dict(),
            "logstd": self.agent.logstd.detach().clone(),
            "critic": {"model_args": self.agent.critic.model_args,
                       "model": self.agent.critic.state_dict()},
            "best_eval": self.best_eval,
            "obs": None if self.obs is None else {k: self.obs[k] for k in self.agent.input_shapes},
            "sources": self.record,
        }

    def _restore_extra(self, payload: dict) -> None:
        if "critic" not in payload:
            raise CheckpointError("not a train-student-rl checkpoint (no critic in it): start "
                                  "from a distilled student with --student instead")
        load_state_checked(self.agent.critic, payload["critic"]["model"], what="critic")
        with torch.no_grad():
            self.agent.logstd.copy_(payload["logstd"])
        self.ppo.load_state_dict(payload["ppo"])
        self.best_eval = payload["best_eval"]
