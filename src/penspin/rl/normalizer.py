"""Running mean/std input normaliser, rl_games style (normalise, then clip to +-5)."""

from __future__ import annotations

import torch
from torch import nn

from penspin.rl import distributed


class RunningMeanStd(nn.Module):
    """Normalise by running statistics over every leading dimension of the input.

    ``shape`` is the trailing shape that keeps its own statistics: ``(96,)`` for the actor
    observation, ``(3,)`` for a point cloud ``[B, P, 3]`` (per coordinate), ``()`` for a scalar.
    Statistics update only in train mode and live in buffers, so they travel in ``state_dict``.
    The sample count is float64 because it reaches billions, far past float32's integer range.
    """

    def __init__(self, shape: tuple[int, ...] | int, epsilon: float = 1e-5, clip: float = 5.0):
        super().__init__()
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.epsilon = epsilon
        self.clip = clip
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("var", torch.ones(self.shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge the batch statistics of ``x`` (all ranks together) into the running ones."""
        if x.numel() == 0:
            return
        dims = tuple(range(x.dim() - len(self.shape)))
        x = x.float()
        n = x.numel() // max(1, self.mean.numel())
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        if distributed.world_size() > 1:
            moments = distributed.all_reduce_mean(torch.stack([mean, var + mean**2]))
            mean, var = moments[0], (moments[1] - moments[0] ** 2).clamp_min(0)
            n *= distributed.world_size()
        total = self.count + n
        w = (n / total).float()
        delta = mean - self.mean
        self.mean += delta * w
        self.var.mul_(1 - w).add_(var * w + delta**2 * w * (1 - w))
        self.count.copy_(total)

    def forward(self, x: torch.Tensor, denorm: bool = False) -> torch.Tensor:
        """Normalise ``x`` (updating first in train mode); ``denorm`` maps back."""
        std = torch.sqrt(self.var + self.epsilon)
        if denorm:
            return x.clamp(-self.clip, self.clip) * std + self.mean
        if self.training:
            self.update(x)
            std = torch.sqrt(self.var + self.epsilon)
        return ((x - self.mean) / std).clamp(-self.clip, self.clip)
