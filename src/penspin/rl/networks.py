"""The oracle's actor-critic (PenSpin's teacher network) with its normalisers inside.

Keeping the normalisers in the module means one ``state_dict`` holds everything needed to act,
so a checkpoint cannot pair a policy with the wrong statistics.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from penspin.rl.normalizer import RunningMeanStd

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class NetworkConfig:
    """Layer sizes and ablation switches; a switch only turns an input off, never on."""

    actor_units: tuple[int, ...] = (512, 256, 128)  # actor MLP widths after the encoders
    priv_units: tuple[int, ...] = (256, 128, 8)  # privileged-state encoder widths (last: code size)
    point_units: tuple[int, ...] = (32, 32, 32)  # per-point encoder widths (PointNet, max-pooled)
    use_priv: bool = True  # read the privileged state (ablation: false)
    use_point_cloud: bool = True  # read the pen's point cloud (ablation: false)
    # Initial action std. PenSpin starts at 1.0, which with 8192 GPU envs is fine; with a few
    # hundred CPU envs such wild exploration drops the pen within ~0.35 s and learning stalls.
    init_sigma: float = 0.3


def _mlp(in_dim: int, units: tuple[int, ...], final_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, out in enumerate(units):
        layers.append(nn.Linear(in_dim, out))
        if final_act or i < len(units) - 1:
            layers.append(nn.ELU())
        in_dim = out
    return nn.Sequential(*layers)


class GaussianActorCritic(nn.Module):
    """A diagonal Gaussian policy around ``mu`` with a state-independent ``logstd``, and a value.

    Subclasses set ``num_actions``, ``logstd`` and ``value_rms`` and implement ``_forward``
    (obs dict -> (mu, normalised value)); PPO needs nothing else of a model.
    """

    num_actions: int
    logstd: nn.Parameter
    value_rms: RunningMeanStd

    def _forward(self, obs_dict: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _neglogp(self, actions: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        z = (actions - mu) * torch.exp(-self.logstd)
        return 0.5 * (z**2).sum(-1) + 0.5 * _LOG_2PI * self.num_actions + self.logstd.sum()

    @torch.no_grad()
    def act(self, obs_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sample actions (unclamped) for a rollout; values are un-normalised."""
        mu, value = self._forward(obs_dict)
        sigma = torch.exp(self.logstd).expand_as(mu)
        actions = mu + sigma * torch.randn_like(mu)
        return {
            "actions": actions,
            "neglogp": self._neglogp(actions, mu),
            "values": self.value_rms(value, denorm=True),
            "mus": mu,
            "sigmas": sigma,
        }

    @torch.no_grad()
    def act_inference(self, obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Deterministic action: clamp(mu, -1, 1)."""
        return self._forward(obs_dict)[0].clamp(-1.0, 1.0)

    @torch.no_grad()
    def values(self, obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Un-normalised state values (bootstrap at the end of a rollout)."""
        return self.value_rms(self._forward(obs_dict)[1], denorm=True)

    def evaluate(
        self, obs_dict: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Differentiable outputs for the PPO loss; values stay normalised."""
        mu, value = self._forward(obs_dict)
        entropy = (self.logstd + 0.5 * (1.0 + _LOG_2PI)).sum()
        return {
            "neglogp": self._neglogp(actions, mu),
            "values": value,
            "entropy": entropy.expand(mu.shape[0]),
            "mus": mu,
            "sigmas": torch.exp(self.logstd).expand_as(mu),
        }


class OracleActorCritic(GaussianActorCritic):
    """Gaussian policy and value on normalised obs plus tanh(priv MLP ++ max-pooled point MLP).

    Inputs (``obs_dict`` keys): ``obs`` [B, obs_dim]; ``priv_info`` [B, priv_dim] if ``use_priv``;
    ``point_cloud`` [B, P, 3] if ``use_point_cloud``. The value head predicts in the value
    normaliser's space; :meth:`act` returns it un-normalised, :meth:`evaluate` normalised.
    """

    def __init__(
        self,
        obs_dim: int = 96,
        num_actions: int = 16,
        priv_dim: int = 61,
        use_priv: bool = True,
        use_point_cloud: bool = True,
        num_points: int = 100,
        actor_units: tuple[int, ...] = (512, 256, 128),
        priv_units: tuple[int, ...] = (256, 128, 8),
        point_units: tuple[int, ...] = (32, 32, 32),
        init_sigma: float = 0.3,
    ):
        super().__init__()
        self.model_args = {
            "obs_dim": obs_dim,
            "num_actions": num_actions,
            "priv_dim": priv_dim,
            "use_priv": use_priv,
            "use_point_cloud": use_point_cloud,
            "num_points": num_points,
            "actor_units": list(actor_units),
            "priv_units": list(priv_units),
            "point_units": list(point_units),
            "init_sigma": init_sigma,
        }
        self.num_actions = num_actions
        self.bf16 = False  # a speed setting, not part of the architecture (see _forward)
        self.use_priv = use_priv
        self.use_point_cloud = use_point_cloud
        self.input_shapes: dict[str, tuple[int, ...]] = {"obs": (obs_dim,)}
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.value_rms = RunningMeanStd(())
        extrin_dim = 0
        if use_priv:
            self.input_shapes["priv_info"] = (priv_dim,)
            self.priv_rms = RunningMeanStd((priv_dim,))
            self.priv_mlp = _mlp(priv_dim, tuple(priv_units), final_act=False)
            extrin_dim += priv_units[-1]
        if use_point_cloud:
            self.input_shapes["point_cloud"] = (num_points, 3)
            self.point_rms = RunningMeanStd((3,))
            # The last ELU runs after the max-pool: ELU is increasing, so max(ELU(x)) equals
            # ELU(max(x)) while costing 1/num_points as much.
            self.point_mlp = _mlp(3, tuple(point_units), final_act=False)
            extrin_dim += point_units[-1]
        self.actor_mlp = _mlp(obs_dim + extrin_dim, tuple(actor_units), final_act=True)
        self.mu = nn.Linear(actor_units[-1], num_actions)
        self.value = nn.Linear(actor_units[-1], 1)
        self.logstd = nn.Parameter(torch.full((num_actions,), math.log(init_sigma)))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        # Start near the zero action (hold the grasp): a random initial mean walks every joint
        # target away within a second and drops the pen before anything is learned.
        with torch.no_grad():
            self.mu.weight.mul_(0.01)

    @classmethod
    def from_obs_shapes(
        cls, obs_shapes: dict[str, tuple[int, ...]], num_actions: int, cfg: NetworkConfig
    ) -> OracleActorCritic:
        """Build from an env's ``obs_shapes``: an input the env does not provide is left out."""
        if len(obs_shapes["obs"]) != 1:
            raise ValueError(f"obs must be a flat vector, env gives shape {obs_shapes['obs']}")
        use_priv = cfg.use_priv and "priv_info" in obs_shapes
        use_pc = cfg.use_point_cloud and "point_cloud" in obs_shapes
        if use_pc and tuple(obs_shapes["point_cloud"])[1:] != (3,):
            raise ValueError(f"point_cloud must be [P, 3], env gives {obs_shapes['point_cloud']}")
        return cls(
            obs_dim=obs_shapes["obs"][0],
            num_actions=num_actions,
            priv_dim=obs_shapes["priv_info"][0] if use_priv else 0,
            use_priv=use_priv,
            use_point_cloud=use_pc,
            num_points=obs_shapes["point_cloud"][0] if use_pc else 0,
            init_sigma=cfg.init_sigma,
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k.endswith("_units")},
        )

    def _forward(self, obs_dict: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, normalised value).

        With ``self.bf16`` the encoders and trunk run in bfloat16 (faster on CPUs with bf16
        instructions, docs/benchmarks.md); the heads, hence action means, log-probs and values,
        stay float32.
        """
        device = obs_dict["obs"].device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.bf16):
            feats = [self.obs_rms(obs_dict["obs"])]
            extrin = []
            if self.use_priv:
                extrin.append(self.priv_mlp(self.priv_rms(obs_dict["priv_info"])))
            if self.use_point_cloud:
                points = self.point_mlp(self.point_rms(obs_dict["point_cloud"]))
                extrin.append(nn.functional.elu(points.max(dim=-2).values))
            if extrin:
                feats.append(torch.tanh(torch.cat(extrin, dim=-1)))
            x = self.actor_mlp(torch.cat(feats, dim=-1))
        x = x.float()
        return self.mu(x), self.value(x).squeeze(-1)
