"""The proprioceptive student (PenSpin's stage-2 policy) with its normalisers inside.

It sees only what a real hand can give: the 30-step (noisy q, target) history, the 96-d actor
observation, fingertip positions from forward kinematics of the newest noisy q, and in the
baseline modes binary taxels and camera pen-end estimates. It never reads ``priv_info`` or
``point_cloud``. It is an actor only: behaviour cloning has no use for a critic; the name matches
the oracle's ``OracleActorCritic``.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from penspin.config import ConfigError
from penspin.rl.networks import _mlp
from penspin.rl.normalizer import RunningMeanStd
from penspin.task.kinematics import FingertipFK

INPUT_MODES = ("proprio", "proprio-tactile", "proprio-ends", "proprio-tactile-ends")
HISTORY_ENCODERS = ("transformer", "conv")


@dataclass
class StudentNetworkConfig:
    """Layer sizes; the defaults are PenSpin's except ``dim_feedforward``, ``dropout`` and the
    baselines' tactile encoder (broken in the original, designed here)."""

    actor_units: tuple[int, ...] = (512, 256, 128)  # actor MLP widths after the encoders
    tip_units: tuple[int, ...] = (256, 128, 8)  # fingertip-position encoder widths
    proprio_out: int = 40  # size of the history encoder's output
    n_heads: int = 2  # attention heads (transformer encoder)
    n_layers: int = 2  # layers (transformer encoder)
    # Feed-forward width: PyTorch's default 2048 makes the feed-forward almost all of the
    # transformer's FLOPs at d_model 32; 128 is the usual 4 x d_model (docs/benchmarks.md).
    dim_feedforward: int = 128
    # PenSpin inherited PyTorch's 0.1. Each iteration trains on freshly collected states, so the
    # regulariser buys little, while drawing the masks is a large share of a CPU update.
    dropout: float = 0.0
    # "transformer" is PenSpin's history encoder; "conv" (two strided 1-D convolutions over
    # time, as RMA's adaptation module) is far cheaper per sample on a CPU (docs/benchmarks.md).
    history_encoder: str = "transformer"
    tactile_units: tuple[int, ...] = (64, 16)  # touch-history encoder widths
    ends_units: tuple[int, ...] = (6, 6, 6)  # per-pen-end encoder widths

    def check(self) -> None:
        if self.dim_feedforward < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ConfigError("n_heads, n_layers and dim_feedforward must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.history_encoder not in HISTORY_ENCODERS:
            raise ConfigError(f"history_encoder must be one of {HISTORY_ENCODERS}, "
                              f"got {self.history_encoder!r}")


def sinusoidal_encoding(length: int, dim: int) -> torch.Tensor:
    """The Transformer paper's fixed positional encoding, [length, dim]."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


class HistoryTransformer(nn.Module):
    """Cls token + raw history tokens + sinusoidal positions, post-LN encoder, cls output."""

    def __init__(self, dim: int, length: int, n_heads: int, n_layers: int,
                 dim_feedforward: int, dropout: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos_enc", sinusoidal_encoding(length + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward, dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_enc
        return self.out(self.encoder(tokens)[:, 0])


class HistoryConv(nn.Module):
    """Two stride-2 convolutions over time (kernel 5), then a linear map of the flattened maps."""

    def __init__(self, dim: int, length: int, kernel: int = 5, stride: int = 2):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, dim, kernel, stride), nn.ELU(),
                                  nn.Conv1d(dim, dim, kernel, stride), nn.ELU())
        out_len = length
        for _ in range(2):
            out_len = (out_len - kernel) // stride + 1
        if out_len < 1:
            raise ConfigError(f"history of {length} steps is too short for the conv encoder")
        self.out = nn.Linear(dim * out_len, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x.transpose(1, 2)).flatten(1))


class StudentActorCritic(nn.Module):
    """Deterministic student: ``mu`` from normalised obs ++ tanh(encoded histories, FK tips).

    Inputs (``obs_dict`` keys): ``obs`` [B, 96], ``proprio_hist`` [B, 30, 32], plus
    ``tactile_hist`` [B, 30, 32] and/or ``obj_ends`` [B, 3, 6] in the modes that name them.
    Normaliser statistics move only through :meth:`update_normalizers` (once per collected
    sample, not once per mini-epoch as in the original), so :meth:`train` leaves them frozen.
    """

    def __init__(
        self,
        input_mode: str = "proprio",
        obs_dim: int = 96,
        num_actions: int = 16,
        history_len: int = 30,
        proprio_dim: int = 32,
        ends_len: int = 3,
        actor_units: tuple[int, ...] = (512, 256, 128),
        tip_units: tuple[int, ...] = (256, 128, 8),
        proprio_out: int = 40,
        n_heads: int = 2,
        n_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
        tactile_units: tuple[int, ...] = (64, 16),
        ends_units: tuple[int, ...] = (6, 6, 6),
        history_encoder: str = "transformer",
    ):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ConfigError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        self.model_args = {
            "input_mode": input_mode, "obs_dim": obs_dim, "num_actions": num_actions,
            "history_len": history_len, "proprio_dim": proprio_dim, "ends_len": ends_len,
            "actor_units": list(actor_units), "tip_units": list(tip_units),
            "proprio_out": proprio_out, "n_heads": n_heads, "n_layers": n_layers,
            "dim_feedforward": dim_feedforward, "dropout": dropout,
            "tactile_units": list(tactile_units), "ends_units": list(ends_units),
            "history_encoder": history_encoder,
        }
        self.input_mode = input_mode
        self.num_actions = num_actions
        self.use_tactile = "tactile" in input_mode
        self.use_ends = "ends" in input_mode
        self.input_shapes: dict[str, tuple[int, ...]] = {
            "obs": (obs_dim,), "proprio_hist": (history_len, proprio_dim)}
        self.fk = FingertipFK()
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.tip_rms = RunningMeanStd((12,))
        if history_encoder == "conv":
            self.proprio_encoder = HistoryConv(proprio_dim, history_len)
        else:
            self.proprio_encoder = HistoryTransformer(proprio_dim, history_len, n_heads, n_layers,
                                                      dim_feedforward, dropout)
        self.proprio_fuse = nn.Linear(proprio_dim, proprio_out)
        self.tip_mlp = _mlp(12, tuple(tip_units), final_act=False)
        feat_dim = obs_dim + proprio_out + tip_units[-1]
        if self.use_tactile:
            self.input_shapes["tactile_hist"] = (history_len, 32)
            self.tactile_mlp = _mlp(history_len * 32, tuple(tactile_units), final_act=False)
            feat_dim += tactile_units[-1]
        if self.use_ends:
            self.input_shapes["obj_ends"] = (ends_len, 6)
            self.ends_rms = RunningMeanStd((3,))
            self.ends_mlp = _mlp(3, tuple(ends_units), final_act=True)
            feat_dim += ends_len * ends_units[-1]
        self.actor_mlp = _mlp(feat_dim, tuple(actor_units), final_act=True)
        self.mu = nn.Linear(actor_units[-1], num_actions)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        self.train()  # normalisers frozen from the start, not only after a first train()/eval()

    @classmethod
    def from_obs_shapes(cls, obs_shapes: dict[str, tuple[int, ...]], num_actions: int,
                        input_mode: str, cfg: StudentNetworkConfig) -> StudentActorCritic:
        """Build for an env's ``obs_shapes``; an input the mode needs but the env lacks is an
        error that says which switch provides it."""
        need = {"obs": "", "proprio_hist": ""}
        if "tactile" in input_mode:
            need["tactile_hist"] = " (set env.obs.tactile=true)"
        if "ends" in input_mode:
            need["obj_ends"] = ""
        for key, hint in need.items():
            if key not in obs_shapes:
                raise ConfigError(f"input_mode {input_mode!r} needs {key!r}, which the env does "
                                  f"not provide{hint}")
        history_len, proprio_dim = obs_shapes["proprio_hist"]
        return cls(
            input_mode=input_mode,
            obs_dim=obs_shapes["obs"][0],
            num_actions=num_actions,
            history_len=history_len,
            proprio_dim=proprio_dim,
            ends_len=obs_shapes["obj_ends"][0] if "obj_ends" in obs_shapes else 3,
            actor_units=cfg.actor_units, tip_units=cfg.tip_units, proprio_out=cfg.proprio_out,
            n_heads=cfg.n_heads, n_layers=cfg.n_layers, dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout, tactile_units=cfg.tactile_units, ends_units=cfg.ends_units,
            history_encoder=cfg.history_encoder,
        )

    def normalizers(self) -> list[RunningMeanStd]:
        return [m for m in self.modules() if isinstance(m, RunningMeanStd)]

    def train(self, mode: bool = True) -> StudentActorCritic:
        super().train(mode)
        for rms in self.normalizers():
            rms.eval()
        return self

    def fingertips(self, obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """FK of the newest noisy joint angles in the history, as a real hand would compute."""
        return self.fk(obs_dict["proprio_hist"][:, -1, : self.num_actions])

    @torch.no_grad()
    def update_normalizers(self, obs_dict: dict[str, torch.Tensor]) -> None:
        self.obs_rms.update(obs_dict["obs"])
        self.tip_rms.update(self.fingertips(obs_dict))
        if self.use_ends:
            self.ends_rms.update(self._ends_points(obs_dict))

    def _ends_points(self, obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        ends = obs_dict["obj_ends"]
        return ends.reshape(ends.shape[0], ends.shape[1], 2, 3)

    def forward(self, obs_dict: dict[str, torch.Tensor], fk_noise: float = 0.0) -> torch.Tensor:
        """Unclamped action mean; ``fk_noise`` (m) adds U(-r, r) to the FK fingertips."""
        tips = self.fingertips(obs_dict)
        if fk_noise > 0:
            tips = tips + (torch.rand_like(tips) * 2 - 1) * fk_noise
        proprio = self.proprio_fuse(self.proprio_encoder(obs_dict["proprio_hist"]))
        feats = [self.obs_rms(obs_dict["obs"]), torch.tanh(proprio),
                 torch.tanh(self.tip_mlp(self.tip_rms(tips)))]
        if self.use_tactile:
            feats.append(torch.tanh(self.tactile_mlp(obs_dict["tactile_hist"].flatten(1))))
        if self.use_ends:
            per_end = self.ends_mlp(self.ends_rms(self._ends_points(obs_dict)))
            feats.append(torch.tanh(per_end.max(dim=-2).values.flatten(1)))
        return self.mu(self.actor_mlp(torch.cat(feats, dim=-1)))

    @torch.no_grad()
    def act_inference(self, obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Deterministic action: clamp(mu, -1, 1)."""
        return self.forward(obs_dict).clamp(-1.0, 1.0)


def with_defaults(model_args: dict) -> dict:
    """A saved ``model_args`` completed with the arguments added since, at their defaults, so
    checkpoints from before a new option still compare equal to a default network."""
    params = inspect.signature(StudentActorCritic.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {**defaults, **model_args}
