"""PPO as PenSpin trains its oracle (rl_games/Hora flavour, rsl_rl-like structure).

The details that differ from a textbook PPO are deliberate, because they are what PenSpin does:
time-out bootstrap folded into the reward, a clipped value loss on normalised returns, and a
learning rate adapted after every mini-epoch from the KL to the stored (per-minibatch
overwritten) action distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from penspin.config import ConfigError
from penspin.rl import distributed
from penspin.rl.networks import GaussianActorCritic


@dataclass
class PPOConfig:
    """PPO hyper-parameters; defaults are PenSpin's except the minibatch count (CPU-sized)."""

    horizon_length: int = 12  # control steps per env per rollout
    mini_epochs: int = 5  # passes over each rollout
    num_minibatches: int = 4  # minibatches per pass
    # PenSpin starts at 5e-3; here the first update at that rate moves the policy by many times
    # the KL threshold (docs/benchmarks.md) before the schedule can react, which undoes the
    # hold-still initialisation. Starting at 5e-4 the schedule raises it within a few updates if
    # it can.
    learning_rate: float = 5e-4
    lr_schedule: str = "adaptive"  # adaptive (KL-driven, per minibatch) or fixed
    kl_threshold: float = 0.02  # target KL of the adaptive schedule
    min_lr: float = 1e-6  # floor of the adaptive learning rate
    max_lr: float = 1e-2  # ceiling of the adaptive learning rate
    gamma: float = 0.99  # discount per control step
    lam: float = 0.95  # GAE lambda
    e_clip: float = 0.2  # PPO ratio clip (also the value clip)
    critic_coef: float = 4.0  # value-loss weight
    entropy_coef: float = 0.0  # entropy bonus weight
    bounds_loss_coef: float = 0.0  # penalty on action means outside [-1.1, 1.1]
    # A floor under the policy's std (0: none). The shipped run's std fell smoothly as its
    # episodes shortened (docs/oracle.md); a floor keeps exploration at a chosen level.
    min_sigma: float = 0.0
    grad_norm: float = 1.0  # gradient-norm clip
    reward_scale: float = 0.01  # rewards are multiplied by this before learning
    value_bootstrap: bool = True  # bootstrap the value at time-outs (not at falls)

    def check(self) -> None:
        if self.lr_schedule not in ("adaptive", "fixed"):
            raise ConfigError(
                f"ppo.lr_schedule must be 'adaptive' or 'fixed', got {self.lr_schedule!r}"
            )
        if self.min_sigma < 0:
            raise ConfigError(f"ppo.min_sigma must be >= 0, got {self.min_sigma}")
        for name in ("horizon_length", "mini_epochs", "num_minibatches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ppo.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_lr <= self.learning_rate <= self.max_lr:
            raise ConfigError(
                f"ppo.learning_rate must lie in [min_lr, max_lr] = [{self.min_lr}, {self.max_lr}],"
                f" got {self.learning_rate}"
            )


def policy_kl(mu: torch.Tensor, sigma: torch.Tensor, old_mu: torch.Tensor, old_sigma: torch.Tensor):
    """Mean KL(new || old) between diagonal Gaussians, as rl_games computes it."""
    kl = (
        torch.log(old_sigma / sigma + 1e-5)
        + (sigma**2 + (old_mu - mu) ** 2) / (2.0 * old_sigma**2 + 1e-5)
        - 0.5
    )
    return kl.sum(-1).mean()


class RolloutStorage:
    """Preallocated [T, N, ...] buffers, written in place so a rollout allocates nothing."""

    def __init__(
        self,
        horizon: int,
        num_envs: int,
        obs_shapes: dict[str, tuple[int, ...]],
        num_actions: int,
        device: torch.device,
    ):
        def zeros(*shape):
            return torch.zeros((horizon, num_envs, *shape), device=device)

        self.horizon = horizon
        self.num_envs = num_envs
        self.obs = {k: zeros(*shape) for k, shape in obs_shapes.items()}
        self.actions = zeros(num_actions)
        self.mus = zeros(num_actions)
        self.sigmas = zeros(num_actions)
        self.neglogp = zeros()
        self.values = zeros()
        self.rewards = zeros()
        self.dones = zeros()
        self.returns = zeros()

    def compute_returns(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        """GAE(lambda) returns; ``rewards`` already hold the time-out bootstrap."""
        gae = torch.zeros_like(last_values)
        next_values = last_values
        for t in reversed(range(self.horizon)):
            not_done = 1.0 - self.dones[t]
            delta = self.rewards[t] + gamma * next_values * not_done - self.values[t]
            gae = delta + gamma * lam * not_done * gae
            self.returns[t] = gae + self.values[t]
            next_values = self.values[t]


class PPO:
    """Collects one horizon of transitions through :meth:`act`/:meth:`process_env_step`, then
    :meth:`update` runs the mini-epochs. The model is in eval mode while acting (normalisers
    frozen) and in train mode while learning (normalisers update on each minibatch)."""

    def __init__(self, model: GaussianActorCritic, cfg: PPOConfig, num_envs: int, device):
        cfg.check()
        self.model = model
        self.cfg = cfg
        self.lr = cfg.learning_rate
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        self.storage = RolloutStorage(
            cfg.horizon_length, num_envs, model.input_shapes, model.num_actions, device
        )
        self.batch_size = cfg.horizon_length * num_envs
        if self.batch_size < cfg.num_minibatches:
            raise ConfigError(
                f"ppo.num_minibatches={cfg.num_minibatches} exceeds the batch of "
                f"{self.batch_size} transitions (horizon_length x num_envs)"
            )
        self.step = 0
        self.model.eval()

    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sample and record actions for the current step; returns them clamped to [-1, 1]."""
        s, t = self.storage, self.step
        res = self.model.act(obs)
        for k, buf in s.obs.items():
            buf[t].copy_(obs[k])
        s.actions[t].copy_(res["actions"])
        s.neglogp[t].copy_(res["neglogp"])
        s.values[t].copy_(res["values"])
        s.mus[t].copy_(res["mus"])
        s.sigmas[t].copy_(res["sigmas"])
        return res["actions"].clamp(-1.0, 1.0)

    def process_env_step(
        self, rewards: torch.Tensor, dones: torch.Tensor, time_outs: torch.Tensor | None
    ) -> None:
        """Record the env's answer; a time-out adds gamma * V(s_t) so truncation is not death."""
        s, t = self.storage, self.step
        torch.mul(rewards, self.cfg.reward_scale, out=s.rewards[t])
        if self.cfg.value_bootstrap and time_outs is not None:
            s.rewards[t].addcmul_(s.values[t], time_outs.float(), value=self.cfg.gamma)
        s.dones[t].copy_(dones)
        self.step += 1

    def update(self, last_obs: dict[str, torch.Tensor],
               adapt_lr: bool = True) -> dict[str, torch.Tensor]:
        """Run ``mini_epochs`` over the rollout; returns mean losses/kl/lr as 0-d tensors.

        ``adapt_lr=False`` holds the rate (a critic warm-up with the actor frozen has KL 0,
        which would otherwise raise the rate to ``max_lr``)."""
        if self.step != self.cfg.horizon_length:
            raise RuntimeError(f"update() after {self.step} of {self.cfg.horizon_length} steps")
        cfg, s = self.cfg, self.storage
        s.compute_returns(self.model.values(last_obs), cfg.gamma, cfg.lam)
        advantages = (s.returns - s.values).flatten()
        moments = distributed.all_reduce_mean(
            torch.stack([advantages.mean(), (advantages**2).mean()])
        )
        adv_std = (moments[1] - moments[0] ** 2).clamp_min(0).sqrt()
        advantages = (advantages - moments[0]) / (adv_std + 1e-8)

        vrms = self.model.value_rms
        vrms.update(s.returns)
        old_values = vrms(s.values).flatten()
        returns = vrms(s.returns).flatten()
        obs = {k: v.flatten(0, 1) for k, v in s.obs.items()}
        actions = s.actions.flatten(0, 1)
        old_neglogp = s.neglogp.flatten()
        old_mu = s.mus.flatten(0, 1).clone()
        old_sigma = s.sigmas.flatten(0, 1).clone()

        n, mb = self.batch_size, math.ceil(self.batch_size / cfg.num_minibatches)
        sums = dict.fromkeys(("actor_loss", "critic_loss", "bounds_loss", "entropy", "grad_norm"))
        kls = []
        self.model.train()
        for _ in range(cfg.mini_epochs):
            perm = torch.randperm(n, device=actions.device)
            epoch_kl = []
            for start in range(0, n, mb):
                idx = perm[start : start + mb]
                res = self.model.evaluate({k: v[idx] for k, v in obs.items()}, actions[idx])
                losses = self._losses(res, idx, advantages, old_neglogp, old_values, returns)
                loss = (
                    losses["actor_loss"]
                    + 0.5 * cfg.critic_coef * losses["critic_loss"]
                    - cfg.entropy_coef * losses["entropy"]
                    + cfg.bounds_loss_coef * losses["bounds_loss"]
                )
                self.optimizer.zero_grad()
                loss.backward()
                distributed.all_reduce_grads(self.model)
                losses["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), cfg.grad_norm
                )
                self.optimizer.step()
                if cfg.min_sigma > 0:
                    with torch.no_grad():
                        self.model.logstd.clamp_(min=math.log(cfg.min_sigma))
                mu, sigma = res["mus"].detach(), res["sigmas"].detach()
                mb_kl = distributed.all_reduce_mean(
                    policy_kl(mu, sigma, old_mu[idx], old_sigma[idx]))
                epoch_kl.append(mb_kl)
                old_mu[idx] = mu
                old_sigma[idx] = sigma
                # Adapt after every minibatch (as rsl_rl does), not once per epoch as rl_games:
                # with a few hundred CPU envs one epoch is too coarse to stop a runaway step.
                if adapt_lr:
                    self._adapt_lr(mb_kl.item())
                for k, v in losses.items():
                    v = v.detach()
                    sums[k] = v if sums[k] is None else sums[k] + v
            kls.append(torch.stack(epoch_kl).mean())
        self.model.eval()
        self.step = 0
        count = cfg.mini_epochs * math.ceil(n / mb)
        stats = {k: v / count for k, v in sums.items()}
        stats["kl"] = torch.stack(kls).mean()
        stats["lr"] = torch.tensor(self.lr)
        # The collapse's first sign was the action mean leaving [-1, 1] (docs/oracle.md), where
        # the env clamps and the Gaussian's log-probs no longer describe what was executed.
        rollout_mu = s.mus.abs()
        stats["mu_beyond_1"] = (rollout_mu > 1.0).float().mean()
        stats["mu_abs_max"] = rollout_mu.max()
        return stats

    def _losses(self, res, idx, advantages, old_neglogp, old_values, returns):
        cfg = self.cfg
        adv = advantages[idx]
        ratio = torch.exp(old_neglogp[idx] - res["neglogp"])
        clipped = ratio.clamp(1.0 - cfg.e_clip, 1.0 + cfg.e_clip)
        actor_loss = torch.max(-adv * ratio, -adv * clipped).mean()
        values, old_v, ret = res["values"], old_values[idx], returns[idx]
        v_clipped = old_v + (values - old_v).clamp(-cfg.e_clip, cfg.e_clip)
        critic_loss = torch.max((values - ret) ** 2, (v_clipped - ret) ** 2).mean()
        mu = res["mus"]
        bounds_loss = ((mu - 1.1).clamp_min(0) ** 2 + (-mu - 1.1).clamp_min(0) ** 2).sum(-1).mean()
        return {
            "actor_loss": actor_loss,
            "critic_loss": critic_loss,
            "bounds_loss": bounds_loss,
            "entropy": res["entropy"].mean(),
        }

    def _adapt_lr(self, kl: float) -> None:
        cfg = self.cfg
        if cfg.lr_schedule == "adaptive":
            if kl > 2.0 * cfg.kl_threshold:
                self.lr = max(self.lr / 1.5, cfg.min_lr)
            elif kl < 0.5 * cfg.kl_threshold:
                self.lr = min(self.lr * 1.5, cfg.max_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        # An adapted rate is state; a fixed one is configuration, so a resume can change it.
        adaptive = self.cfg.lr_schedule == "adaptive"
        self.lr = float(state["lr"]) if adaptive else self.cfg.learning_rate
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
