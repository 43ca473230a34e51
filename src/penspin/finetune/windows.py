"""Sliding 30-step windows of replay demonstrations, in the student's own inputs and units.

Entry ``t`` of a demo is (measured q_t, the target that produced it = target_{t-1}), the task's
history entry. The window ending at ``t`` is entries t-29..t, and its label is the action the
policy took at ``t``: (target_t - target_{t-1}) / action_scale, clamped to [-1, 1]. The original
labelled a window with the action at its *first* step and in radians of (target - q); both QUIRKs
are fixed here. It also used only full windows, so a student never trained on a trial's first
1.5 s; with ``pad_start`` the windows of the first steps repeat the first entry, as the
controller's history does at a trial's start. Demos that store the target held before their
first step (``start_target``) give entry 0 = (q_0, start target) and a window ending at step 0,
exactly what the controller feeds; older files start at step 1.

Repeats of one exported trajectory share their target sequence, so the validation split groups
demos by trajectory (``trajectory_id``, or identical targets in older files): a validation demo
never has a twin in training, and each group can weigh as one demo.
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
    labels: torch.Tensor  # [N, 16] the action taken at each window's last step
    next_target: torch.Tensor  # [N, 16] rad, the absolute target that action commanded
    demo: torch.Tensor  # [N] which demo each window comes from
    group: torch.Tensor  # [N] which trajectory group (repeats of one trajectory) it comes from
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


def trajectory_groups(demos: list[Demo]) -> list[int]:
    """A group number per demo: its trajectory id, or for demos without one (older files) the
    demos whose first target steps are identical, which open-loop repeats of one trajectory are."""
    keys: dict[object, int] = {}
    out = []
    for d in demos:
        key = (("id", d.trajectory_id) if d.trajectory_id is not None
               else ("targets", np.round(d.target[:HASH_STEPS], 4).tobytes()))
        out.append(keys.setdefault(key, len(keys)))
    return out


HASH_STEPS = 20  # target steps that identify a trajectory in files without trajectory ids


def build_windows(demos: list[Demo], action_scale: float, history_len: int = 30,
                  pad_start: bool = True) -> Windows:
    """Windows ending at every step from 0 (``pad_start`` with a start target), 1
    (``pad_start``, older demos) or ``history_len`` (full windows only, the original's choice)."""
    entries, ends, touch, last, first, nexts, owner, group = [], [], [], [], [], [], [], []
    offset = 0
    with_ends = all("obj_ends" in d.extras for d in demos)
    with_touch = all(TOUCH_KEY in d.extras for d in demos)
    groups = trajectory_groups(demos)
    for k, d in enumerate(demos):
        # With a start target the entries run from step 0, else from step 1.
        skip = 0 if d.start_target is not None else 1
        t0 = skip if pad_start else skip + history_len - 1  # first step a window may end at
        if d.length < t0 + 1:
            continue
        q = torch.from_numpy(d.qpos).float()
        target = torch.from_numpy(d.target).float()
        if skip == 0:
            held = torch.cat([torch.from_numpy(d.start_target).float()[None], target[:-1]])
        else:
            held = target[:-1]  # entry t (t >= 1) holds target_{t-1}
        entries.append(torch.cat([q[skip:], held], 1))
        if with_ends:
            ends.append(torch.from_numpy(d.extras["obj_ends"]).float().reshape(d.length, 6)[skip:])
        if with_touch:
            touch.append(torch.from_numpy(d.extras[TOUCH_KEY]).float()[skip:])
        count = d.length - t0
        last.append(offset + torch.arange(t0 - skip, t0 - skip + count))
        first.append(torch.full((count,), offset))
        nexts.append(target[t0:])
        owner.append(torch.full((count,), k))
        group.append(torch.full((count,), groups[k]))
        offset += d.length - skip
    if not last:
        need = (1 if pad_start else history_len) + 1  # for demos without a start target
        raise ConfigError(f"no demonstration is longer than {need} steps: nothing to finetune on")
    entries_all, last_all, next_all = torch.cat(entries), torch.cat(last), torch.cat(nexts)
    return Windows(entries_all, torch.cat(ends) if with_ends else None,
                   torch.cat(touch) if with_touch else None, last_all, torch.cat(first),
                   label(next_all, entries_all[last_all, 16:], action_scale), next_all,
                   torch.cat(owner), torch.cat(group), history_len)


def label(next_target: torch.Tensor, held: torch.Tensor, action_scale: float) -> torch.Tensor:
    """The action that moves the held target to ``next_target``, in action units, clamped as
    the controller clamps it: the label of a window whose newest entry holds ``held``."""
    return ((next_target - held) / action_scale).clamp(-1.0, 1.0)


def demo_weights(windows: Windows) -> torch.Tensor:
    """Per window, 1 / (demos in its trajectory group): every trajectory weighs as one demo."""
    pairs = torch.unique(torch.stack([windows.group, windows.demo]), dim=1)
    per_group = torch.bincount(pairs[0])
    return 1.0 / per_group[windows.group].float()


def split(windows: Windows, val_ratio: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation window indices, split by trajectory group so that validation windows
    neither overlap training ones (neighbouring windows share 29 of 30 steps) nor replay a
    trajectory that training also replays."""
    groups = torch.unique(windows.group)
    gen = torch.Generator().manual_seed(seed)
    order = groups[torch.randperm(len(groups), generator=gen)]
    n_val = int(round(val_ratio * len(groups)))
    if val_ratio > 0 and len(groups) > 1:
        n_val = min(max(n_val, 1), len(groups) - 1)
    val_mask = torch.from_numpy(np.isin(windows.group.numpy(), order[:n_val].numpy()))
    all_idx = torch.arange(len(windows))
    return all_idx[~val_mask], all_idx[val_mask]
