"""Run an exported student on a robot computer: torch + safetensors, no training code.

``penspin export-student`` writes ``student.safetensors`` (weights, normaliser statistics) and
``student.json`` (architecture, action scale, joint order and limits, control rate, fingertip
kinematic chain). This module rebuilds the network from those two files alone and computes the
fingertip positions itself by forward kinematics of the measured joint angles, so it imports
nothing from penspin and can be copied onto the robot as one file.

A control loop at ``control_hz``, joints in ``joint_names`` order (radians)::

    policy = DeployedStudent.load("export/")
    action = policy.act(proprio_hist, obs, q)   # [30, 32], [96], [16] -> [16] in [-1, 1]
    target = (target + policy.action_scale * action).clamp(policy.joint_lower, policy.joint_upper)

where a history entry is (measured q, commanded target) and ``obs`` the last three entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

FORMAT = "penspin-student"
FORMAT_VERSION = 1


class _Normalizer(nn.Module):
    def __init__(self, size: int, epsilon: float, clip: float):
        super().__init__()
        self.epsilon, self.clip = epsilon, clip
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.epsilon)).clamp(-self.clip, self.clip)


def _mlp(in_dim: int, units: list[int], final_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, out in enumerate(units):
        layers.append(nn.Linear(in_dim, out))
        if final_act or i < len(units) - 1:
            layers.append(nn.ELU())
        in_dim = out
    return nn.Sequential(*layers)


class _HistoryEncoder(nn.Module):
    def __init__(self, dim: int, length: int, heads: int, layers: int, ff: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_enc", torch.zeros(length + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, ff, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_enc
        return self.out(self.encoder(tokens)[:, 0])


class _HistoryConv(nn.Module):
    def __init__(self, dim: int, length: int, kernel: int = 5, stride: int = 2):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, dim, kernel, stride), nn.ELU(),
                                  nn.Conv1d(dim, dim, kernel, stride), nn.ELU())
        out_len = ((length - kernel) // stride + 1 - kernel) // stride + 1
        self.out = nn.Linear(dim * out_len, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.conv(x.transpose(1, 2)).flatten(1))


class _FingertipFK(nn.Module):
    """World fingertip positions [B, 3 * fingers] from joint angles, chain from the JSON."""

    def __init__(self, chain: dict):
        super().__init__()
        fingers = chain["fingers"]
        palm_rot = torch.tensor(chain["palm_rot"])
        stack = lambda key: torch.tensor([f[key] for f in fingers])  # noqa: E731
        axes = stack("axes")  # [F, J, 3]
        x, y, z = axes.unbind(-1)
        zero = torch.zeros_like(x)
        cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1)
        chain_tensors = {  # constants, not weights: kept out of the state dict
            "base_rot": palm_rot @ stack("base_rot"),
            "base_pos": torch.tensor(chain["palm_pos"]) + stack("base_pos") @ palm_rot.T,
            "offsets": torch.cat([stack("offsets"), stack("tip")[:, None]], 1),
            "cross": cross.reshape(*axes.shape[:2], 3, 3),
        }
        for name, value in chain_tensors.items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        nf, nj = self.cross.shape[:2]
        angles = q.reshape(q.shape[0], nf, nj)
        rot = self.base_rot.expand(q.shape[0], nf, 3, 3)
        pos = self.base_pos.expand(q.shape[0], nf, 3)
        eye = torch.eye(3)
        for j in range(nj):
            k = self.cross[:, j]
            s, c = angles[..., j, None, None].sin(), angles[..., j, None, None].cos()
            rot = rot @ (eye + s * k + (1 - c) * (k @ k))  # Rodrigues
            pos = pos + (rot @ self.offsets[:, j, :, None])[..., 0]
        return pos.reshape(q.shape[0], nf * 3)


class _StudentNet(nn.Module):
    """The student's inference graph; module names match the training checkpoint's."""

    def __init__(self, a: dict, norm: dict, chain: dict):
        super().__init__()
        eps, clip = norm["epsilon"], norm["clip"]
        self.use_tactile = "tactile" in a["input_mode"]
        self.use_ends = "ends" in a["input_mode"]
        self.num_actions = a["num_actions"]
        self.fk = _FingertipFK(chain)
        self.obs_rms = _Normalizer(a["obs_dim"], eps, clip)
        self.tip_rms = _Normalizer(12, eps, clip)
        if a.get("history_encoder", "transformer") == "conv":
            self.proprio_encoder = _HistoryConv(a["proprio_dim"], a["history_len"])
        else:
            self.proprio_encoder = _HistoryEncoder(a["proprio_dim"], a["history_len"],
                                                   a["n_heads"], a["n_layers"],
                                                   a["dim_feedforward"])
        self.proprio_fuse = nn.Linear(a["proprio_dim"], a["proprio_out"])
        self.tip_mlp = _mlp(12, a["tip_units"], final_act=False)
        feat = a["obs_dim"] + a["proprio_out"] + a["tip_units"][-1]
        if self.use_tactile:
            self.tactile_mlp = _mlp(a["history_len"] * 32, a["tactile_units"], final_act=False)
            feat += a["tactile_units"][-1]
        if self.use_ends:
            self.ends_rms = _Normalizer(3, eps, clip)
            self.ends_mlp = _mlp(3, a["ends_units"], final_act=True)
            feat += a["ends_len"] * a["ends_units"][-1]
        self.actor_mlp = _mlp(feat, a["actor_units"], final_act=True)
        self.mu = nn.Linear(a["actor_units"][-1], a["num_actions"])

    def forward(self, x: dict[str, torch.Tensor], q: torch.Tensor) -> torch.Tensor:
        tips = self.fk(q)
        proprio = self.proprio_fuse(self.proprio_encoder(x["proprio_hist"]))
        feats = [self.obs_rms(x["obs"]), torch.tanh(proprio),
                 torch.tanh(self.tip_mlp(self.tip_rms(tips)))]
        if self.use_tactile:
            feats.append(torch.tanh(self.tactile_mlp(x["tactile_hist"].flatten(1))))
        if self.use_ends:
            ends = x["obj_ends"].reshape(x["obj_ends"].shape[0], -1, 2, 3)
            per_end = self.ends_mlp(self.ends_rms(ends)).max(dim=-2).values
            feats.append(torch.tanh(per_end.flatten(1)))
        return self.mu(self.actor_mlp(torch.cat(feats, -1))).clamp(-1.0, 1.0)


class DeployedStudent:
    """An exported student: ``act`` maps one step's inputs to one action in [-1, 1].

    Attributes from the export: ``config`` (the JSON), ``input_mode``, ``action_scale`` (rad per
    action unit), ``control_hz``, ``joint_names``, ``joint_lower``/``joint_upper`` (tensors).
    """

    def __init__(self, net: _StudentNet, config: dict):
        self.net = net.eval()
        self.config = config
        self.input_mode = config["model_args"]["input_mode"]
        self.inputs = {k: tuple(v) for k, v in config["inputs"].items()}
        self.action_scale = float(config["action_scale"])
        self.control_hz = float(config["control_hz"])
        self.joint_names = list(config["joint_names"])
        self.joint_lower = torch.tensor(config["joint_lower"])
        self.joint_upper = torch.tensor(config["joint_upper"])

    @classmethod
    def load(cls, directory: str | Path) -> DeployedStudent:
        directory = Path(directory)
        config = json.loads((directory / "student.json").read_text())
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: not a {FORMAT} v{FORMAT_VERSION} export "
                             f"(found {config.get('format')} v{config.get('format_version')})")
        net = _StudentNet(config["model_args"], config["normalizer"], config["kinematics"])
        net.load_state_dict(load_file(str(directory / "student.safetensors")))
        return cls(net, config)

    @torch.inference_mode()
    def act(self, proprio_hist, obs, q, tactile_hist=None, obj_ends=None) -> torch.Tensor:
        """One action [num_actions] from this step's inputs (array-likes, float, radians/m).

        ``proprio_hist`` [30, 32]: (measured q, commanded target) per step, oldest first, newest
        included; ``obs`` [96]: its last three entries; ``q`` [16]: the newest measured joint
        angles (fingertips come from their FK); ``tactile_hist`` [30, 32] binary and
        ``obj_ends`` [3, 6] (two pen ends minus the palm origin, 3 steps) in the modes that use
        them.
        """
        given = {"proprio_hist": proprio_hist, "obs": obs, "tactile_hist": tactile_hist,
                 "obj_ends": obj_ends}
        x = {}
        for key, shape in self.inputs.items():
            if given[key] is None:
                raise ValueError(f"input mode {self.input_mode!r} needs {key}")
            value = torch.as_tensor(given[key], dtype=torch.float32)
            if tuple(value.shape) != shape:
                raise ValueError(f"{key} must have shape {shape}, got {tuple(value.shape)}")
            x[key] = value[None]
        q = torch.as_tensor(q, dtype=torch.float32)
        if tuple(q.shape) != (self.net.num_actions,):
            raise ValueError(f"q must have shape ({self.net.num_actions},), got {tuple(q.shape)}")
        return self.net(x, q[None])[0]
