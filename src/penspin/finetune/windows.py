"""Sliding 30-step windows of replay demonstrations, in the student's own inputs and units.

Entry ``t`` of a demo is (measured q_t, the target that produced it = target_{t-1}), the task's
history entry. The window ending at ``t`` is entries t-29..t, and its label is the action the
policy took at ``t``: (target_t - target_{t-1}) / action_scale, clamped to [-1, 1]. The original
labelled a window with the action at its *first* step and in radians of (target - q); both QUIRKs
are fixed here. It also used only full windows, so a student never trained on a trial's first
1.5 s; with ``pad_start`` the windows of the first steps repeat the first entry, as the task's
history does after a reset (measured: without them a finetuned student dropped the pen in half
the time, in simulation and on the proxy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from penspin.config import ConfigError
from penspin.replay.dataset import TOUCH_KEY, Demo


@dataclass
class Windows:
    """All windows of a set of demos; ``batch(idx)`` gathers student inputs and labels."""

    entries: torch.Tensor  # [E, 32] every demo's entries, concatenated
    ends: torch.Tensor | None  # [E, 6] pen ends (palm frame) per entry, when the demos have them
    touch: torch.Tensor | None  # [E, 32] binary taxels per entry, when the demos have them
    last: torch.Tensor  # [N] index into entries of each window's last step
    first: torch.Tensor  # [N] index of the window's demo's first entry (older slots repeat it)
    labels: torch.Tensor  # [N, 16]
    demo: torch.Tensor  # [N] which demo each window comes from
    history_len: int

    def __len__(self) -> int:
        return len(self.last)

    def batch(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        last, first = self.last[idx, None], self.first[idx, None]
        rows = torch.maximum(last + torch.arange(1 - self.history_len, 1), first)
        hist = self.entries[rows]
        inputs = {"proprio_hist": hist, "obs": hist[:, -3:].flatten(1)}
        if self.touch is not None:
            inputs["tactile_hist"] = self.touch[rows]
        if self.ends is not None:
            inputs["obj_ends"] = self.ends[torch.maximum(last + torch.arange(-2, 1), first)]
        return inputs, self.labels[idx]


def build_windows(demos: list[Demo], action_scale: float, history_len: int = 30,
                  pad_start: bool = True) -> Windows:
    """Windows ending at every step from 1 (``pad_start``) or from ``history_len`` (full
    windows only, the original's choice)."""
    entries, ends, touch, last, first, labels, owner = [], [], [], [], [], [], []
    offset = 0
    with_ends = all("obj_ends" in d.extras for d in demos)
    with_touch = all(TOUCH_KEY in d.extras for d in demos)
    t0 = 1 if pad_start else history_len  # the first step a window may end at
    for k, d in enumerate(demos):
        if d.length < t0 + 1:
            continue
        q = torch.from_numpy(d.qpos).float()
        target = torch.from_numpy(d.target).float()
        entries.append(torch.cat([q[1:], target[:-1]], 1))  # entries of steps 1..T-1
        if with_ends:
            ends.append(torch.from_numpy(d.extras["obj_ends"]).float().reshape(d.length, 6)[1:])
        if with_touch:
            touch.append(torch.from_numpy(d.extras[TOUCH_KEY]).float()[1:])
        count = d.length - t0
        last.append(offset + torch.arange(t0 - 1, t0 - 1 + count))
        first.append(torch.full((count,), offset))
        labels.append(((target[t0:] - target[t0 - 1:-1]) / action_scale).clamp(-1.0, 1.0))
        owner.append(torch.full((count,), k))
        offset += d.length - 1
    if not last:
        raise ConfigError(f"no demonstration is longer than {t0 + 1} steps: nothing to finetune on")
    return Windows(torch.cat(entries), torch.cat(ends) if with_ends else None,
                   torch.cat(touch) if with_touch else None, torch.cat(last),
                   torch.cat(first), torch.cat(labels), torch.cat(owner), history_len)


def split(windows: Windows, val_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation window indices, split by demonstration so that validation windows do
    not overlap training ones (neighbouring windows share 29 of 30 steps)."""
    demos = torch.unique(windows.demo)
    gen = torch.Generator().manual_seed(seed)
    order = demos[torch.randperm(len(demos), generator=gen)]
    n_val = int(round(val_ratio * len(demos)))
    if val_ratio > 0 and len(demos) > 1:
        n_val = min(max(n_val, 1), len(demos) - 1)
    val_mask = np.isin(windows.demo.numpy(), order[:n_val].numpy())
    all_idx = torch.arange(len(windows))
    return all_idx[~torch.from_numpy(val_mask)], all_idx[torch.from_numpy(val_mask)]
