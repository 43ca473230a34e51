"""Distil the oracle into the proprioceptive student: behaviour cloning on oracle rollouts.

PenSpin's finding is that the student learns best from states the *oracle* visits (the oracle
drives, deterministically), not from its own (DAgger). Both are here: ``dagger=False`` is the
method, ``dagger=True`` the baseline in which the student's mean action drives and the oracle
only labels. Each iteration collects ``horizon`` steps from every env, then fits the student to
the oracle's clamped actions with an L1 loss (sum over joints, mean over samples), as PenSpin.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from penspin.config import ConfigError, to_dict, validate
from penspin.oracle.trainer import load_oracle
from penspin.rl import distributed
from penspin.rl.checkpoint import (
    CheckpointError,
    diff_keys,
    load_checkpoint,
    load_state_checked,
)
from penspin.rl.networks import OracleActorCritic
from penspin.rl.runner import (
    ClosedLoopSelectionConfig,
    EpisodeStats,
    Runner,
    seed_everything,
)
from penspin.student.network import (
    INPUT_MODES,
    StudentActorCritic,
    StudentNetworkConfig,
    with_defaults,
)
from penspin.task.config import as_evaluated
from penspin.task.episodes import run_episodes

CHECKPOINT_KIND = "student"


@dataclass
class StudentTrainConfig(ClosedLoopSelectionConfig):
    """Everything the student trainer reads besides the env (and the oracle checkpoint).

    Until the first closed-loop evaluation best.pt is the lowest held-out loss; with
    ``eval_every=0`` it is that throughout.
    """

    input_mode: str = "proprio"  # proprio, proprio-tactile, proprio-ends or proprio-tactile-ends
    network: StudentNetworkConfig = field(default_factory=StudentNetworkConfig)
    dagger: bool = False  # baseline: the student drives, the oracle labels
    # Gaussian noise (action units) on the oracle's actions while it drives (BC only), so the
    # student also sees the oracle recover from small errors (DART); labels stay noise-free.
    drive_noise: float = 0.0
    init: str = ""  # a student checkpoint whose weights and normalisers start this run
    learning_rate: float = 1e-3  # Adam step size
    # "fixed", or "linear": decays to 0 at max_env_steps, so late updates stop moving the
    # weights between closed-loop evaluations (a fixed rate leaves the score swinging by ~3 s).
    lr_schedule: str = "fixed"
    # Exponential moving average of the weights, per optimiser step (0: off). The average is
    # what is evaluated, selected and saved as the policy; the online weights go on training.
    ema_decay: float = 0.0
    grad_norm: float = 1.0  # gradient-norm clip
    # Steps per env per data collection. PenSpin: 48 GPU envs x 512; on a CPU with 256 envs, 64
    # gives the same ~16k samples per iteration and 4 minibatches of PenSpin's 4096.
    horizon: int = 64
    num_minibatches: int = 4  # minibatches per pass over a rollout
    mini_epochs: int = 5  # passes over each rollout
    max_env_steps: int = 10_000_000  # training budget, env steps over all ranks
    # Uniform noise (m) on the FK fingertips while training: link-length and calibration error
    # of a real hand's FK (PenSpin adds U(-0.01, 0.01) in normalised units, about 0.1 mm).
    fk_noise: float = 0.002
    save_every: int = 20  # iterations between last.pt saves

    positive: ClassVar[tuple[str, ...]] = ("horizon", "num_minibatches", "mini_epochs")

    def check(self) -> None:
        super().check()
        if self.input_mode not in INPUT_MODES:
            raise ConfigError(f"input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if self.learning_rate <= 0 or self.grad_norm <= 0 or self.fk_noise < 0:
            raise ConfigError("learning_rate and grad_norm must be > 0, fk_noise >= 0")
        if self.lr_schedule not in ("fixed", "linear"):
            raise ConfigError(f"lr_schedule must be fixed or linear, got {self.lr_schedule!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if self.drive_noise < 0:
            raise ConfigError(f"drive_noise must be >= 0, got {self.drive_noise}")


def check_oracle_fits(oracle: OracleActorCritic, env: Any, where: str = "oracle") -> None:
    """Refuse an oracle whose inputs the env does not produce in the shapes it was trained on."""
    problems = []
    for key, shape in oracle.input_shapes.items():
        got = env.obs_shapes.get(key)
        if got is None:
            problems.append(f"{key}: oracle expects {tuple(shape)}, the env does not provide it")
        elif tuple(got) != tuple(shape):
            problems.append(f"{key}: oracle expects {tuple(shape)}, the env gives {tuple(got)}")
    if oracle.num_actions != env.num_actions:
        problems.append(f"actions: oracle has {oracle.num_actions}, the env {env.num_actions}")
    if problems:
        raise CheckpointError(
            f"{where} does not fit this env: " + "; ".join(problems)
            + " (the student's env defaults to the oracle's own; check env.obs.* overrides)"
        )


def closed_loop(student: StudentActorCritic, env_cfg: Any, seed: int,
                episodes: int) -> dict[str, float]:
    """Means over ``episodes`` held-out episodes the student drives (seed ``seed``).

    They are drawn as evaluated (``as_evaluated``): a run that trains on a skewed friction
    distribution or with exploration noise is still selected on PenSpin's uniform task."""
    task = dataclasses.replace(as_evaluated(env_cfg), seed=seed)
    with torch.random.fork_rng():
        ep = run_episodes(student.act_inference, task, episodes, progress=False)
    held = ep["length"] * ep["dt"]
    return {"eval/time_to_fall_s": float(held.mean()),
            "eval/survival": float((~ep["fell"]).mean()),
            "eval/rotation_rad_s": float((ep["rotation"] / held.clip(min=1e-9)).mean())}


class StudentTrainer(Runner):
    """Behaviour cloning (or DAgger) of an oracle into a :class:`StudentActorCritic`.

    ``oracle`` is an oracle checkpoint path or a loaded :class:`OracleActorCritic` (then
    ``oracle_path`` says where it came from, for the record). Under ``torchrun`` each rank
    collects from its own envs, gradients and normaliser statistics are averaged, and rank 0
    alone evaluates, logs and writes checkpoints.
    """

    kind = CHECKPOINT_KIND

    def __init__(
        self,
        env: Any,
        cfg: StudentTrainConfig,
        oracle: str | Path | OracleActorCritic,
        run_dir: str | Path | None = None,
        resolved_config: dict | None = None,
        oracle_path: str = "",
    ):
        validate(cfg)
        if not isinstance(oracle, OracleActorCritic):
            oracle_path = oracle_path or str(oracle)
            oracle = load_oracle(oracle)
        self.oracle_path = oracle_path
        check_oracle_fits(oracle, env, where=f"oracle {self.oracle_path}".strip())
        distributed.init()
        super().__init__(
            env, cfg, run_dir or Path("runs/student") / time.strftime("%Y%m%d-%H%M%S"),
            resolved_config if resolved_config is not None else to_dict(cfg),
            record={"oracle": self.oracle_path})
        self.oracle = oracle.to(self.device).eval()
        seed_everything(cfg.seed + distributed.rank())
        self.model = StudentActorCritic.from_obs_shapes(
            env.obs_shapes, env.num_actions, cfg.input_mode, cfg.network).to(self.device)
        if cfg.init:
            init = load_checkpoint(cfg.init, expected_kind=CHECKPOINT_KIND)
            diffs = diff_keys(with_defaults(init["model_args"]), self.model.model_args)
            if diffs:
                raise CheckpointError(f"{cfg.init}: its network does not fit this run: "
                                      + "; ".join(diffs))
            load_state_checked(self.model, init["model"])
        distributed.broadcast_module(self.model)
        self.average = copy.deepcopy(self.model).eval() if cfg.ema_decay > 0 else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
        self.episodes = EpisodeStats(env.num_envs, cfg.reward_window, self.device)
        self.best_loss = math.inf
        self.best_eval = -math.inf

    def steps_per_iteration(self) -> int:
        return self.cfg.horizon * self.env.num_envs * distributed.world_size()

    def _postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{scalars['loss/heldout']:.3f}",
                "reward": f"{scalars.get('episode/reward', math.nan):.2f}"}

    def _improved(self, scalars: dict[str, float]) -> bool:
        """Closed-loop time to fall decides once evaluations have begun; before the first one
        (or with ``eval_every=0``) the held-out loss does, so a short run still has a best.pt."""
        if "eval/time_to_fall_s" in scalars:
            if scalars["eval/time_to_fall_s"] <= self.best_eval:
                return False
            self.best_eval = scalars["eval/time_to_fall_s"]
            return True
        if self.best_eval > -math.inf or scalars["loss/heldout"] >= self.best_loss:
            return False
        self.best_loss = scalars["loss/heldout"]
        return True

    def closed_loop(self) -> dict[str, float]:
        """The student drives the held-out episodes; their means, for logs and selection."""
        return closed_loop(self.policy(), self.env.cfg, self.cfg.eval_seed,
                           self.cfg.eval_episodes)

    def policy(self) -> StudentActorCritic:
        """The weights that are evaluated and saved: the running average when there is one."""
        return self.model if self.average is None else self.average

    def _update_average(self) -> None:
        weight = 1.0 - self.cfg.ema_decay
        with torch.no_grad():
            for mine, online in zip(self.average.parameters(), self.model.parameters(),
                                    strict=True):
                mine.lerp_(online, weight)
            for mine, online in zip(self.average.buffers(), self.model.buffers(), strict=True):
                mine.copy_(online)

    def learning_rate(self) -> float:
        if self.cfg.lr_schedule == "fixed":
            return self.cfg.learning_rate
        return self.cfg.learning_rate * max(0.0, 1.0 - self.env_steps / self.cfg.max_env_steps)

    def _collect(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``horizon`` steps; returns the student inputs and the oracle's labels."""
        horizon, n = self.cfg.horizon, self.env.num_envs
        inputs = {k: torch.empty(horizon, n, *s, device=self.device)
                  for k, s in self.model.input_shapes.items()}
        labels = torch.empty(horizon, n, self.env.num_actions, device=self.device)
        self._begin_rollout()
        self.model.eval()
        for t in range(horizon):
            labels[t] = self.oracle.act_inference(self.obs)
            for k in inputs:
                inputs[k][t] = self.obs[k]
            if self.cfg.dagger:
                drive = self.model.act_inference(self.obs)
            elif self.cfg.drive_noise > 0:
                drive = labels[t] + self.cfg.drive_noise * torch.randn_like(labels[t])
            else:
                drive = labels[t]
            self._env_step(drive)
        flat = {k: v.flatten(0, 1) for k, v in inputs.items()}
        return flat, labels.flatten(0, 1)

    def fit(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
        """Update normalisers once, then ``mini_epochs`` passes of L1 on clamped actions.

        ``loss/heldout`` is the first pass's mean: each minibatch is scored before the student
        has trained on it, so it estimates the error on unseen oracle states.
        """
        cfg = self.cfg
        n = labels.shape[0]
        mb = math.ceil(n / cfg.num_minibatches)
        self.model.update_normalizers(inputs)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        self.model.train()
        first, total, grad_sum, count = [], 0.0, 0.0, 0
        for epoch in range(cfg.mini_epochs):
            perm = torch.randperm(n, device=labels.device)
            for start in range(0, n, mb):
                idx = perm[start:start + mb]
                mu = self.model({k: v[idx] for k, v in inputs.items()}, fk_noise=cfg.fk_noise)
                loss = (mu.clamp(-1.0, 1.0) - labels[idx]).abs().sum(-1).mean()
                self.optimizer.zero_grad()
                loss.backward()
                distributed.all_reduce_grads(self.model)
                grad = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_norm)
                self.optimizer.step()
                if self.average is not None:
                    self._update_average()
                value = loss.item()
                if epoch == 0:
                    first.append(value)
                total += value
                grad_sum += float(grad)
                count += 1
        self.model.eval()
        return {"loss/heldout": sum(first) / len(first), "loss/bc": total / count,
                "policy/grad_norm": grad_sum / count}

    def _iteration(self) -> dict[str, float]:
        start = time.perf_counter()
        inputs, labels = self._collect()
        rollout_end = time.perf_counter()
        scalars = self._learn(self.fit, inputs, labels)
        end = time.perf_counter()
        scalars["policy/lr"] = self.optimizer.param_groups[0]["lr"]
        # Who drives decides whose episodes these are: the oracle's (BC) or the student's.
        scalars = self._summary(scalars, start, rollout_end, end)
        due = self.cfg.eval_every and (self.iteration + 1) % self.cfg.eval_every == 0
        if due and distributed.is_rank0():  # only rank 0 chooses best.pt
            scalars.update(self.closed_loop())
            scalars["time/eval_s"] = time.perf_counter() - end
            scalars["time/iteration_s"] += scalars["time/eval_s"]  # throughput pays for it
        return scalars

    def _extra_payload(self) -> dict:
        """The oracle's weights go in too, so a resume does not need the oracle file."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "online_model": None if self.average is None else self.model.state_dict(),
            "best_loss": self.best_loss,
            "best_eval": self.best_eval,
            "obs": self.obs,
            "oracle": {"path": self.oracle_path, "model_args": self.oracle.model_args,
                       "model": self.oracle.state_dict()},
        }

    def _restore_extra(self, payload: dict) -> None:
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.average is not None:  # "model" holds the average; "online_model" the rest
            self.average.load_state_dict(self.model.state_dict())
            if payload.get("online_model") is not None:
                load_state_checked(self.model, payload["online_model"])
        self.best_loss = payload["best_loss"]
        self.best_eval = payload.get("best_eval", -math.inf)


