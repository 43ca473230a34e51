"""What every trainer shares: the run folder, the loop, logging, checkpoints and statistics.

A trainer subclasses :class:`Runner` and supplies one iteration (collect, then learn), the
progress-bar fields, the "is this the best so far" rule and its checkpoint extras; the loop,
best/last checkpointing, timing and resume bookkeeping are written once, here.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm import tqdm

from penspin.config import ConfigError
from penspin.rl import distributed
from penspin.rl.checkpoint import (
    CheckpointError,
    diff_keys,
    load_checkpoint,
    load_state_checked,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from penspin.rl.stop_signal import stop_on_signal


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


class RunLogger:
    """TensorBoard, W&B (imported only when chosen; offline works) or nothing."""

    def __init__(self, kind: str, run_dir: Path, config: dict, cfg: Any):
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


@dataclass
class RunConfig:
    """The run settings every trainer shares: budget, checkpoints, seed, logging, threads.

    A trainer's config subclasses it (redeclaring a field only to change its default) and
    names in ``positive`` the further fields that must be >= 1.
    """

    max_env_steps: int = 50_000_000  # training budget, env steps over all ranks
    save_every: int = 100  # iterations between last.pt saves
    reward_window: int = 200  # episodes in the running mean that picks best.pt
    seed: int = 42  # torch / numpy / random seed of rank 0 (rank r: seed + r)
    logger: str = "tensorboard"  # tensorboard, wandb or none
    wandb_project: str = "penspin"  # wandb project (logger=wandb)
    wandb_mode: str = "offline"  # wandb mode: offline or online
    progress: bool = True  # progress bar
    # Torch threads for the update (physics is idle then; docs/benchmarks.md). Safe beside other
    # processes because penspin makes OpenMP wait passively (penspin/__init__.py).
    learn_threads: int = 2

    positive: ClassVar[tuple[str, ...]] = ()

    def check(self) -> None:
        if self.logger not in ("tensorboard", "wandb", "none"):
            raise ConfigError(f"logger must be tensorboard, wandb or none, got {self.logger!r}")
        for name in ("max_env_steps", "save_every", "reward_window", "learn_threads",
                     *self.positive):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class ClosedLoopSelectionConfig(RunConfig):
    """A student trainer's selection: every ``eval_every`` iterations the policy drives the same
    ``eval_episodes`` held-out episodes (seed ``eval_seed``) without exploration noise, and
    best.pt is the longest mean time to fall. A low training loss did not predict closed-loop
    survival (docs/student.md)."""

    eval_every: int = 10  # iterations between held-out evaluations
    eval_episodes: int = 64  # held-out episodes per evaluation
    eval_seed: int = 1_000_003  # episode seed of the held-out evaluations

    def check(self) -> None:
        super().check()
        if self.eval_episodes < 1:
            raise ConfigError(f"eval_episodes must be >= 1, got {self.eval_episodes}")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be >= 0 (0: off), got {self.eval_every}")


class Runner:
    """The training loop of a trainer whose config is a :class:`RunConfig`.

    Subclasses set ``kind``, ``model``, ``episodes`` and implement ``steps_per_iteration``,
    ``_iteration``, ``_postfix``, ``_improved`` and ``_extra_payload``.
    """

    kind = ""

    def __init__(self, env: Any, cfg: Any, run_dir: str | Path, config: dict,
                 record: dict | None = None):
        self.env = env
        self.cfg = cfg
        self.device = torch.device(env.device)
        self.run_dir = Path(run_dir)
        self.config = config
        self.iteration = 0
        self.env_steps = 0
        self.obs: dict[str, torch.Tensor] | None = None
        if distributed.is_rank0():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(
                json.dumps({**config, **(record or {})}, indent=2) + "\n")
            (self.run_dir / "git.txt").write_text(git_description(Path(__file__).parent))

    def steps_per_iteration(self) -> int:
        raise NotImplementedError

    def _iteration(self) -> dict[str, float]:
        raise NotImplementedError

    def _postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        raise NotImplementedError

    def _improved(self, scalars: dict[str, float]) -> bool:
        """Whether this iteration is the best so far (and remember it)."""
        raise NotImplementedError

    def _extra_payload(self) -> dict:
        raise NotImplementedError

    def policy(self) -> torch.nn.Module:
        """The weights a checkpoint ships as its policy."""
        return self.model

    def _restore_extra(self, payload: dict) -> None:
        """Restore what ``_extra_payload`` saved (optimiser, best score, ...)."""
        raise NotImplementedError

    def train(self) -> dict[str, float]:
        """Train until ``max_env_steps`` or a stop signal (see ``stop_signal``); returns the last
        iteration's logged scalars."""
        cfg = self.cfg
        if self.obs is None:
            self.obs = self.env.reset()
        per_iter = self.steps_per_iteration()
        rank0 = distributed.is_rank0()
        logger = RunLogger(cfg.logger if rank0 else "none", self.run_dir, self.config, cfg)
        bar = tqdm(total=cfg.max_env_steps, initial=self.env_steps, unit="step",
                   unit_scale=True, dynamic_ncols=True, disable=not (cfg.progress and rank0))
        scalars: dict[str, float] = {}
        saved_at = self.iteration
        with stop_on_signal() as stop:
            try:
                while self.env_steps < cfg.max_env_steps:
                    scalars = self._iteration()
                    self.iteration += 1
                    self.env_steps += per_iter
                    scalars["perf/env_steps_per_s"] = per_iter / scalars["time/iteration_s"]
                    bar.set_postfix(self._postfix(scalars), refresh=False)
                    bar.update(per_iter)
                    if rank0:
                        logger.log(scalars, self.env_steps)
                        if self._improved(scalars):
                            self.save(self.run_dir / "best.pt")
                        if self.iteration % cfg.save_every == 0:
                            self.save(self.run_dir / "last.pt")
                            saved_at = self.iteration
                    if stop.requested:
                        break
                if rank0 and saved_at != self.iteration:
                    self.save(self.run_dir / "last.pt")
            finally:
                bar.close()
                logger.close()
        return scalars

    def _learn(self, update, *args):
        """Run ``update`` with ``learn_threads`` torch threads (physics is idle meanwhile)."""
        rollout_threads = torch.get_num_threads()
        torch.set_num_threads(self.cfg.learn_threads)
        try:
            return update(*args)
        finally:
            torch.set_num_threads(rollout_threads)

    def _begin_rollout(self) -> None:
        self._env_time = 0.0
        self._log_sums: dict[str, torch.Tensor] = {}
        self._rollout_steps = 0

    def _env_step(self, actions: torch.Tensor):
        """Step the env, timing it and folding its episodes and logs into this iteration's."""
        t = time.perf_counter()
        self.obs, rewards, dones, info = self.env.step(actions)
        self._env_time += time.perf_counter() - t
        self._rollout_steps += 1
        self.episodes.step(rewards, dones, info.get("episode"))
        for k, v in info.get("log", {}).items():
            self._log_sums[k] = self._log_sums.get(k, 0.0) + v  # summed on the device
        return rewards, dones, info

    def _summary(self, scalars: dict, start: float, rollout_end: float, end: float) -> dict:
        """Add episode means, per-step env logs and the time split to an iteration's scalars."""
        self.episodes.flush()
        scalars = {k: float(v) for k, v in scalars.items()}
        scalars.update({f"episode/{k}": v for k, v in self.episodes.means().items()})
        steps = max(self._rollout_steps, 1)
        scalars.update({f"env/{k}": float(v) / steps for k, v in self._log_sums.items()})
        scalars.update({
            "time/env_step_s": self._env_time,
            "time/policy_s": rollout_end - start - self._env_time,
            "time/learn_s": end - rollout_end,
            "time/iteration_s": end - start,
        })
        return scalars

    def checkpoint_payload(self) -> dict:
        """Everything needed to continue this run bit for bit (single process)."""
        get_state = getattr(self.env, "get_state", None)
        return {
            "kind": self.kind,
            "config": self.config,
            "model_args": self.model.model_args,
            "model": self.policy().state_dict(),
            "counters": {"iteration": self.iteration, "env_steps": self.env_steps},
            "episodes": self.episodes.state_dict(),
            "rng": rng_state(),
            "env_state": get_state() if callable(get_state) else None,
            **self._extra_payload(),
        }

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.checkpoint_payload())

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimiser, normalisers, counters, RNG, env."""
        payload = load_checkpoint(path, expected_kind=self.kind)
        diffs = diff_keys(payload["model_args"], self.model.model_args)
        if diffs:
            raise CheckpointError(
                f"{path}: the checkpoint's network does not fit this env/config: "
                + "; ".join(diffs)
            )
        load_state_checked(self.model, payload["model"])
        self._restore_extra(payload)
        self.iteration = payload["counters"]["iteration"]
        self.env_steps = payload["counters"]["env_steps"]
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


def rank_env(task):
    """This rank's task env: torch on one thread (physics has its own threads, and the two would
    fight over the cores), each rank with its own grasps, physics parameters and noise (rank 0
    draws the configured seed)."""
    import dataclasses

    from penspin.task.env import PenSpinEnv

    torch.set_num_threads(1)
    distributed.init()
    return PenSpinEnv(dataclasses.replace(task, seed=task.seed + distributed.rank()))


def train_to_end(trainer: Runner, resume: str, done: str) -> None:
    """Every training command's tail: resume if asked, train to the budget or a stop signal,
    close the env, say where the checkpoints are."""
    if resume:
        trainer.resume(resume)
        distributed.print0(f"resumed {resume} at {trainer.env_steps:,} env steps")
    trainer.train()
    trainer.env.close()
    distributed.print0(done)
