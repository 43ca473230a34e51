"""Training loop for the oracle: rollouts, PPO updates, logging, checkpoints and exact resume."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from penspin.config import to_dict, validate
from penspin.rl import distributed
from penspin.rl.checkpoint import load_checkpoint, model_from_payload
from penspin.rl.networks import NetworkConfig, OracleActorCritic
from penspin.rl.ppo import PPO, PPOConfig
from penspin.rl.runner import EpisodeStats, RunConfig, Runner, seed_everything

CHECKPOINT_KIND = "oracle"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (emulated bf16 would be slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class OracleTrainConfig(RunConfig):
    """Everything the oracle trainer reads besides the env."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    log_dir: str = "runs/oracle"  # run folder when --run-dir is not given
    # Run encoders and trunk in bfloat16 (heads stay float32), faster on CPUs with native bf16
    # (AVX512-BF16, AMX; docs/benchmarks.md); on by default where /proc/cpuinfo shows one.
    bf16: bool = field(default_factory=lambda: cpu_has_bf16())


class PPORunner(Runner):
    """A :class:`Runner` whose iteration is one PPO rollout of every env and one update.

    Subclasses set ``ppo`` (a :class:`PPO` on their model) besides what ``Runner`` asks.
    """

    def steps_per_iteration(self) -> int:
        return self.cfg.ppo.horizon_length * self.env.num_envs * distributed.world_size()

    def _ppo_iteration(self, adapt_lr: bool = True) -> tuple[dict, tuple[float, float, float]]:
        """Roll out and update; returns PPO's statistics and (start, rollout end, end) times."""
        start = time.perf_counter()
        self._begin_rollout()
        for _ in range(self.cfg.ppo.horizon_length):
            rewards, dones, info = self._env_step(self.ppo.act(self.obs))
            self.ppo.process_env_step(rewards, dones, info.get("time_outs"))
        rollout_end = time.perf_counter()
        stats = self._learn(self.ppo.update, self.obs, adapt_lr)
        return stats, (start, rollout_end, time.perf_counter())


class OracleTrainer(PPORunner):
    """PPO on an env that follows the penspin vector-env contract (see ``tests/test_ppo.py``).

    Only rank 0 writes files and logs; with ``torchrun`` every rank steps its own envs and the
    PPO update averages gradients, KL and normaliser statistics across ranks.
    """

    kind = CHECKPOINT_KIND

    def __init__(
        self,
        env: Any,
        cfg: OracleTrainConfig,
        run_dir: str | Path | None = None,
        resolved_config: dict | None = None,
    ):
        validate(cfg)
        distributed.init()
        super().__init__(
            env, cfg, run_dir or Path(cfg.log_dir) / time.strftime("%Y%m%d-%H%M%S"),
            resolved_config if resolved_config is not None else to_dict(cfg))
        seed_everything(cfg.seed + distributed.rank())
        self.model = OracleActorCritic.from_obs_shapes(
            env.obs_shapes, env.num_actions, cfg.network
        ).to(self.device)
        self.model.bf16 = cfg.bf16 and self.device.type == "cpu"
        distributed.broadcast_module(self.model)
        self.ppo = PPO(self.model, cfg.ppo, env.num_envs, self.device)
        self.episodes = EpisodeStats(env.num_envs, cfg.reward_window, self.device)
        self.best_reward = -math.inf

    def _postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{scalars.get('episode/reward', math.nan):.2f}",
                "rot": f"{scalars.get('episode/rotation_speed', math.nan):.3f}"}

    def _improved(self, scalars: dict[str, float]) -> bool:
        reward = scalars.get("episode/reward")
        if reward is None or reward <= self.best_reward:
            return False
        self.best_reward = reward
        return True

    def _iteration(self) -> dict[str, float]:
        stats, times = self._ppo_iteration()
        scalars = {
            "loss/actor": stats["actor_loss"],
            "loss/critic": stats["critic_loss"],
            "loss/bounds": stats["bounds_loss"],
            "policy/mu_beyond_1": stats["mu_beyond_1"],
            "policy/mu_abs_max": stats["mu_abs_max"],
            "policy/entropy": stats["entropy"],
            "policy/grad_norm": stats["grad_norm"],
            "policy/kl": stats["kl"],
            "policy/lr": stats["lr"],
            "policy/sigma": self.model.logstd.detach().exp().mean(),
        }
        return self._summary(scalars, *times)

    def _extra_payload(self) -> dict:
        return {
            "ppo": self.ppo.state_dict(),
            "best_reward": self.best_reward,
            "obs": None if self.obs is None else {k: self.obs[k] for k in self.model.input_shapes},
        }

    def _restore_extra(self, payload: dict) -> None:
        self.ppo.load_state_dict(payload["ppo"])
        self.best_reward = payload["best_reward"]


def oracle_from_payload(payload: dict) -> OracleActorCritic:
    """An oracle in eval mode from a checkpoint payload (its ``model_args`` and ``model``)."""
    return model_from_payload(OracleActorCritic, payload, what="oracle").eval()


def load_oracle(path: str | Path, device: str | torch.device = "cpu") -> OracleActorCritic:
    """The oracle at ``path`` in eval mode; any other kind of checkpoint is refused with its
    kind named."""
    return oracle_from_payload(load_checkpoint(path, expected_kind=CHECKPOINT_KIND)).to(device)
