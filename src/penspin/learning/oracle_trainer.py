"""Training loop for the oracle: rollouts, PPO updates, logging, checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import random
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from penspin.config import ConfigError, to_dict, validate
from penspin.learning import distributed
from penspin.learning.checkpoint import (
    CheckpointError,
    diff_keys,
    load_checkpoint,
    load_state_checked,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from penspin.learning.networks import NetworkConfig, OracleActorCritic
from penspin.learning.ppo import PPO, PPOConfig

CHECKPOINT_KIND = "oracle"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (emulated bf16 would be slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass
class OracleTrainConfig:
    """Everything the oracle trainer reads besides the env."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    max_env_steps: int = 50_000_000
    save_every: int = 100
    reward_window: int = 200
    log_dir: str = "runs/oracle"
    seed: int = 42
    logger: str = "tensorboard"
    wandb_project: str = "penspin"
    wandb_mode: str = "offline"
    progress: bool = True
    # Torch threads for the PPO update (physics is idle then). 2 on an idle 2-core machine makes
    # the update ~1.9x faster, but if another process holds a core, OpenMP's spinning threads
    # make it 10-30x slower, so the default is the safe 1.
    learn_threads: int = 1
    # Run encoders and trunk in bfloat16 (heads stay float32): ~2x faster learning on CPUs with
    # native bf16 (AVX512-BF16, AMX); on by default where /proc/cpuinfo shows such a CPU.
    bf16: bool = field(default_factory=lambda: cpu_has_bf16())

    def check(self) -> None:
        if self.logger not in ("tensorboard", "wandb", "none"):
            raise ConfigError(f"logger must be tensorboard, wandb or none, got {self.logger!r}")
        for name in ("max_env_steps", "save_every", "reward_window", "learn_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


class WindowMean:
    """Mean of about the last ``window`` values, updated from (sum, count) tensors without a
    device sync (rl_games' AverageScalarMeter)."""

    def __init__(self, window: int, device: torch.device):
        self.window = window
        self.mean = torch.zeros((), device=device)
        self.size = torch.zeros((), device=device)

    def update(self, total: torch.Tensor, count: torch.Tensor) -> None:
        n = count.clamp(max=self.window)
        old = torch.minimum(self.window - n, self.size)
        mean = (self.mean * old + total / count.clamp(min=1) * n) / (old + n).clamp(min=1)
        self.mean = torch.where(count > 0, mean, self.mean)
        self.size = old + n

    def state_dict(self) -> dict:
        return {"mean": self.mean, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].to(self.mean.device)
        self.size = state["size"].to(self.size.device)


class EpisodeStats:
    """Per-env returns/lengths plus windowed means of finished episodes.

    Reward and length are tracked here from the raw env reward (what PPO optimises); any other
    ``info["episode"]`` entry (e.g. ``rotation_speed``) is averaged as given.
    """

    def __init__(self, num_envs: int, window: int, device: torch.device):
        self.window = window
        self.device = device
        self.returns = torch.zeros(num_envs, device=device)
        self.lengths = torch.zeros(num_envs, device=device)
        self.meters: dict[str, WindowMean] = {}
        self._sums: dict[str, list[torch.Tensor]] = {}

    def _add(self, key: str, total: torch.Tensor, count: torch.Tensor | int) -> None:
        count = torch.as_tensor(count, dtype=torch.float32, device=self.device)
        acc = self._sums.get(key)
        self._sums[key] = [total, count] if acc is None else [acc[0] + total, acc[1] + count]

    def step(self, rewards: torch.Tensor, dones: torch.Tensor, episode: dict | None) -> None:
        self.returns += rewards
        self.lengths += 1
        d = dones.float()
        n = d.sum()
        self._add("reward", (self.returns * d).sum(), n)
        self._add("length", (self.lengths * d).sum(), n)
        self.returns *= 1 - d
        self.lengths *= 1 - d
        for k, v in (episode or {}).items():
            if k not in ("reward", "length"):
                self._add(k, v.float().sum().to(self.device), v.numel())

    def flush(self) -> None:
        """Fold this iteration's finished episodes into the window means."""
        for k, (total, count) in self._sums.items():
            self.meters.setdefault(k, WindowMean(self.window, self.device)).update(total, count)
        self._sums = {}

    def means(self) -> dict[str, float]:
        """Window means of every key that has seen at least one finished episode."""
        return {k: m.mean.item() for k, m in self.meters.items() if m.size.item() > 0}

    def state_dict(self) -> dict:
        return {
            "returns": self.returns,
            "lengths": self.lengths,
            "meters": {k: m.state_dict() for k, m in self.meters.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.returns.copy_(state["returns"])
        self.lengths.copy_(state["lengths"])
        self.meters = {}
        for k, s in state["meters"].items():
            self.meters[k] = WindowMean(self.window, self.device)
            self.meters[k].load_state_dict(s)


class _Logger:
    """TensorBoard, W&B (imported only when chosen; offline works) or nothing."""

    def __init__(self, kind: str, run_dir: Path, config: dict, cfg: OracleTrainConfig):
        self.kind = kind
        self._tb = self._wandb = None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tb"))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise ConfigError("logger=wandb needs `pip install wandb`") from None
            self._wandb = wandb.init(
                project=cfg.wandb_project,
                name=run_dir.name,
                dir=str(run_dir),
                config=config,
                mode=cfg.wandb_mode,
            )

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_description(where: Path) -> str:
    """Commit and dirty flag of the code that ran, or why they are unknown."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)

    try:
        rev = git("rev-parse", "HEAD")
        if rev.returncode != 0:
            reason = (rev.stderr.strip().splitlines() or ["not a repository"])[0]
            return f"git: unavailable ({reason})\n"
        dirty = bool(git("status", "--porcelain").stdout.strip())
    except (OSError, subprocess.SubprocessError) as e:
        return f"git: unavailable ({e})\n"
    return f"rev: {rev.stdout.strip()}\ndirty: {str(dirty).lower()}\n"


class OracleTrainer:
    """PPO on an env that follows the penspin vector-env contract (see ``tests/test_ppo.py``).

    Only rank 0 writes files and logs; with ``torchrun`` every rank steps its own envs and the
    PPO update averages gradients, KL and normaliser statistics across ranks.
    """

    def __init__(
        self,
        env: Any,
        cfg: OracleTrainConfig,
        run_dir: str | Path | None = None,
        resolved_config: dict | None = None,
    ):
        validate(cfg)
        distributed.init()
        self.env = env
        self.cfg = cfg
        self.device = torch.device(env.device)
        self.run_dir = Path(run_dir or Path(cfg.log_dir) / time.strftime("%Y%m%d-%H%M%S"))
        self.config = resolved_config if resolved_config is not None else to_dict(cfg)
        seed_everything(cfg.seed + distributed.rank())
        self.model = OracleActorCritic.from_obs_shapes(
            env.obs_shapes, env.num_actions, cfg.network
        ).to(self.device)
        self.model.bf16 = cfg.bf16 and self.device.type == "cpu"
        for tensor in self.model.state_dict().values():
            distributed.broadcast(tensor)
        self.ppo = PPO(self.model, cfg.ppo, env.num_envs, self.device)
        self.episodes = EpisodeStats(env.num_envs, cfg.reward_window, self.device)
        self.iteration = 0
        self.env_steps = 0
        self.best_reward = -math.inf
        self.obs: dict[str, torch.Tensor] | None = None
        if distributed.is_rank0():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
            (self.run_dir / "git.txt").write_text(git_description(Path(__file__).parent))

    def train(self) -> dict[str, float]:
        """Train until ``max_env_steps``; returns the last iteration's logged scalars."""
        cfg = self.cfg
        if self.obs is None:
            self.obs = self.env.reset()
        per_iter = cfg.ppo.horizon_length * self.env.num_envs * distributed.world_size()
        rank0 = distributed.is_rank0()
        logger = _Logger(cfg.logger if rank0 else "none", self.run_dir, self.config, cfg)
        bar = tqdm(
            total=cfg.max_env_steps,
            initial=self.env_steps,
            unit="step",
            unit_scale=True,
            dynamic_ncols=True,
            disable=not (cfg.progress and rank0),
        )
        scalars: dict[str, float] = {}
        saved_at = self.iteration
        try:
            while self.env_steps < cfg.max_env_steps:
                scalars = self._iteration()
                self.iteration += 1
                self.env_steps += per_iter
                scalars["perf/env_steps_per_s"] = per_iter / scalars["time/iteration_s"]
                bar.set_postfix(
                    reward=f"{scalars.get('episode/reward', math.nan):.2f}",
                    rot=f"{scalars.get('episode/rotation_speed', math.nan):.3f}",
                    refresh=False,
                )
                bar.update(per_iter)
                if rank0:
                    logger.log(scalars, self.env_steps)
                    reward = scalars.get("episode/reward")
                    if reward is not None and reward > self.best_reward:
                        self.best_reward = reward
                        self.save(self.run_dir / "best.pt")
                    if self.iteration % cfg.save_every == 0:
                        self.save(self.run_dir / "last.pt")
                        saved_at = self.iteration
            if rank0 and saved_at != self.iteration:
                self.save(self.run_dir / "last.pt")
        finally:
            bar.close()
            logger.close()
        return scalars

    def _iteration(self) -> dict[str, float]:
        start = time.perf_counter()
        env_time = 0.0
        log_sums: dict[str, Any] = {}
        horizon = self.cfg.ppo.horizon_length
        for _ in range(horizon):
            actions = self.ppo.act(self.obs)
            t = time.perf_counter()
            self.obs, rewards, dones, info = self.env.step(actions)
            env_time += time.perf_counter() - t
            self.ppo.process_env_step(rewards, dones, info.get("time_outs"))
            self.episodes.step(rewards, dones, info.get("episode"))
            for k, v in info.get("log", {}).items():
                log_sums[k] = log_sums.get(k, 0.0) + v
        rollout_end = time.perf_counter()
        rollout_threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.learn_threads)
        try:
            stats = self.ppo.update(self.obs)
        finally:
            torch.set_num_threads(rollout_threads)
        end = time.perf_counter()
        self.episodes.flush()
        scalars = {
            "loss/actor": stats["actor_loss"],
            "loss/critic": stats["critic_loss"],
            "loss/bounds": stats["bounds_loss"],
            "policy/entropy": stats["entropy"],
            "policy/grad_norm": stats["grad_norm"],
            "policy/kl": stats["kl"],
            "policy/lr": stats["lr"],
            "policy/sigma": self.model.logstd.detach().exp().mean(),
        }
        scalars = {k: float(v) for k, v in scalars.items()}
        scalars.update({f"episode/{k}": v for k, v in self.episodes.means().items()})
        scalars.update({f"env/{k}": float(v) / horizon for k, v in log_sums.items()})
        scalars["time/env_step_s"] = env_time
        scalars["time/policy_s"] = rollout_end - start - env_time
        scalars["time/learn_s"] = end - rollout_end
        scalars["time/iteration_s"] = end - start
        return scalars

    def checkpoint_payload(self) -> dict:
        """Everything needed to continue this run bit for bit (single process)."""
        get_state = getattr(self.env, "get_state", None)
        return {
            "kind": CHECKPOINT_KIND,
            "config": self.config,
            "model_args": self.model.model_args,
            "model": self.model.state_dict(),
            "ppo": self.ppo.state_dict(),
            "counters": {"iteration": self.iteration, "env_steps": self.env_steps},
            "best_reward": self.best_reward,
            "episodes": self.episodes.state_dict(),
            "rng": rng_state(),
            "env_state": get_state() if callable(get_state) else None,
            "obs": None if self.obs is None else {k: self.obs[k] for k in self.model.input_shapes},
        }

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.checkpoint_payload())

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimiser, lr, normalisers, counters, RNG, env."""
        payload = load_checkpoint(path, expected_kind=CHECKPOINT_KIND)
        diffs = diff_keys(payload["model_args"], self.model.model_args)
        if diffs:
            raise CheckpointError(
                f"{path}: the checkpoint's network does not fit this env/config: "
                + "; ".join(diffs)
            )
        load_state_checked(self.model, payload["model"])
        self.ppo.load_state_dict(payload["ppo"])
        self.iteration = payload["counters"]["iteration"]
        self.env_steps = payload["counters"]["env_steps"]
        self.best_reward = payload["best_reward"]
        self.episodes.load_state_dict(payload["episodes"])
        self.obs = None
        set_state = getattr(self.env, "set_state", None)
        obs = payload["obs"]
        exact = (
            distributed.world_size() == 1
            and callable(set_state)
            and payload["env_state"] is not None
            and obs is not None
            and obs["obs"].shape[0] == self.env.num_envs
        )
        if exact:
            set_rng_state(payload["rng"])
            set_state(payload["env_state"])
            self.obs = {k: v.to(self.device) for k, v in obs.items()}
        else:
            seed_everything(self.cfg.seed + distributed.rank() + 1000 * self.iteration)
            if distributed.is_rank0():
                warnings.warn(
                    "resuming without the env's state (env lacks get_state/set_state, num_envs "
                    "changed, or several ranks): envs restart from reset, not bit for bit",
                    stacklevel=2,
                )


def load_oracle(path: str | Path, device: str | torch.device = "cpu") -> OracleActorCritic:
    """The trained oracle from a checkpoint, in eval mode, ready for ``act_inference``."""
    payload = load_checkpoint(path, expected_kind=CHECKPOINT_KIND)
    model = OracleActorCritic(**payload["model_args"])
    load_state_checked(model, payload["model"])
    return model.to(device).eval()
