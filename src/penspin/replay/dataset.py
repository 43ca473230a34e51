"""The replay data files of PenSpin's real-world pipeline, written by replay, read by finetuning.

Layout (the original's): ``real_data.h5`` (or ``real_data_full.h5`` with camera data) holds one
group ``replay_demon_{idx}`` per successful demonstration with datasets ``qpos``, ``action``
(target - qpos), ``current_target_qpos`` and ``finger_tip_pose``, all ``[T, ...]``. Files store
the Allegro driver's joint order (a root attribute ``joint_order`` says so; the original's files
have none and are hardware order); every array crossing this module's API is in penspin order.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from penspin.config import UserFacingError
from penspin.robot.joint_order import (
    from_hardware,
    tips_from_hardware,
    tips_to_hardware,
    to_hardware,
)
from penspin.sim.allegro import NUM_JOINTS

FILE_NAME = "real_data.h5"
FULL_FILE_NAME = "real_data_full.h5"
GROUP_PREFIX = "replay_demon_"
_GROUP_RE = re.compile(re.escape(GROUP_PREFIX) + r"(\d+)")
TARGET_KEY = "current_target_qpos"
# The original replay script wrote the target under this name.
_OLD_TARGET_KEY = "current_target"
_JOINT_KEYS = {"qpos", TARGET_KEY, "action"}
_TIPS_KEY = "finger_tip_pose"
# Binary taxels [T, 32] read with each qpos, in the task's taxel order (sim/scene.py) whatever the
# file's joint order: penspin's addition, so that students that read touch can be finetuned.
TOUCH_KEY = "touch"
# Group attributes penspin adds (the original's readers ignore attributes).
_TRAJ_ATTR = "trajectory_id"
_START_ATTR = "start_target"
# Trailing shape (None: any size) and dtype of every known dataset; ``None`` dtype keeps the file's.
_SPECS: dict[str, tuple[tuple, type]] = {
    "qpos": ((NUM_JOINTS,), np.float32),
    TARGET_KEY: ((NUM_JOINTS,), np.float32),
    "action": ((NUM_JOINTS,), np.float32),
    _TIPS_KEY: ((12,), np.float32),
    "rgb_ori": ((None, None, 3), np.uint8),
    "rgb_c2d": ((None, None, 3), np.uint8),
    "depth": ((None, None), np.float32),
    "pc": ((None, 3), np.float32),
    "obj_ends": ((2, 3), np.float32),
    TOUCH_KEY: ((32,), np.float32),
}
_COMPRESSED = {"rgb_ori", "rgb_c2d", "depth", "pc"}
_GZIP = {"compression": "gzip", "compression_opts": 4}
_ORDERS = ("hardware", "penspin")


class DatasetError(UserFacingError, ValueError):
    """A replay data file, group or dataset that cannot be used."""


@dataclass
class Demo:
    """One replayed demonstration, float32 arrays ``[T, ...]`` in penspin joint order."""

    name: str
    qpos: np.ndarray
    target: np.ndarray
    action: np.ndarray
    finger_tip_pose: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    # Which exported trajectory this demo replays (repeats share it); None in older files.
    trajectory_id: int | None = None
    # The target the hand held before the demo's first step (the controller's history at t=0
    # pairs it with the first reading); None in older files.
    start_target: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.qpos)


def _where(path: Path, group: str, key: str) -> str:
    return f"{path}: group {group!r}, key {key!r}"


def _check(value, where: str, key: str, length: int | None) -> np.ndarray:
    """``value`` as a valid array for dataset ``key`` (unknown keys: only the length is checked)."""
    trailing, dtype = _SPECS.get(key, (None, None))
    arr = np.asarray(value)
    if key == "obj_ends" and arr.ndim == 2 and arr.shape[1] == 6:  # flat ends, as some files have
        arr = arr.reshape(len(arr), 2, 3)
    if dtype is np.uint8 and arr.dtype != np.uint8:
        raise DatasetError(f"{where}: expected uint8, got {arr.dtype}")
    if dtype is np.float32:
        if not np.issubdtype(arr.dtype, np.number):
            raise DatasetError(f"{where}: expected numbers, got {arr.dtype}")
        arr = arr.astype(np.float32)
    if trailing is not None and (arr.ndim != 1 + len(trailing) or any(
        want is not None and got != want
        for got, want in zip(arr.shape[1:], trailing, strict=True)
    )):
        want = ", ".join(["T", *("*" if d is None else str(d) for d in trailing)])
        raise DatasetError(f"{where}: expected shape [{want}], got {list(arr.shape)}")
    if arr.ndim == 0 or len(arr) == 0:
        raise DatasetError(f"{where}: expected at least one step, got shape {list(arr.shape)}")
    if length is not None and len(arr) != length:
        raise DatasetError(f"{where}: has {len(arr)} steps but qpos has {length}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise DatasetError(f"{where}: contains non-finite values (NaN or inf)")
    return arr


def _reorder(key: str, arr: np.ndarray, order: str, to_disk: bool) -> np.ndarray:
    """Permute a joint or fingertip dataset between penspin order and the file's ``order``."""
    if order == "penspin":
        return arr
    if key in _JOINT_KEYS:
        return to_hardware(arr) if to_disk else from_hardware(arr)
    if key == _TIPS_KEY:
        return tips_to_hardware(arr) if to_disk else tips_from_hardware(arr)
    return arr


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file ({e})") from e


def _joint_order(f: h5py.File, path: Path) -> str:
    """The file's joint order; files without the attribute are the original's, hardware order."""
    order = f.attrs.get("joint_order", "hardware")
    order = order.decode() if isinstance(order, bytes) else str(order)
    if order not in _ORDERS:
        raise DatasetError(f"{path}: root attribute joint_order={order!r}, expected one of "
                           f"{_ORDERS}")
    return order


def _demo_groups(f: h5py.File) -> list[tuple[int, str]]:
    """``(index, name)`` of the demonstration groups, by index."""
    found = ((_GROUP_RE.fullmatch(name), name) for name, item in f.items()
             if isinstance(item, h5py.Group))
    return sorted((int(m.group(1)), name) for m, name in found if m)


def _resolve(path_or_folder) -> Path:
    """A folder means its ``real_data.h5``, or ``real_data_full.h5`` when only that exists."""
    path = Path(path_or_folder)
    if not path.is_dir():
        return path
    full = path / FULL_FILE_NAME
    return full if not (path / FILE_NAME).exists() and full.exists() else path / FILE_NAME


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_demo(path, qpos, target, finger_tip_pose, extras: dict | None = None,
                index: int | None = None, trajectory_id: int | None = None,
                start_target=None) -> str:
    """Append one demonstration (penspin order) as a new group and return the group's name.

    The file is never modified in place: a copy plus the new group goes to a temporary file in the
    same folder that then replaces the real one, so a process killed at any moment leaves the file
    as it was before or after this call, never half-written.
    """
    path = Path(path)
    order, taken = "hardware", []
    if path.exists():
        with _open(path) as f:
            order, taken = _joint_order(f, path), [i for i, _ in _demo_groups(f)]
    if index is None:
        index = max(taken, default=-1) + 1
    if index < 0 or index in taken:
        raise DatasetError(f"{path}: cannot add group {GROUP_PREFIX}{index}: "
                           + ("it exists already" if index >= 0 else "negative index"))
    name = f"{GROUP_PREFIX}{index}"
    extras = dict(extras or {})
    clash = {"qpos", TARGET_KEY, _OLD_TARGET_KEY, "action", _TIPS_KEY} & extras.keys()
    if clash:
        raise DatasetError(f"{_where(path, name, sorted(clash)[0])}: reserved, not an extra")
    qpos = _check(qpos, _where(path, name, "qpos"), "qpos", None)
    arrays = {"qpos": qpos, TARGET_KEY: target, _TIPS_KEY: finger_tip_pose, **extras}
    arrays = {key: _check(value, _where(path, name, key), key, len(qpos))
              for key, value in arrays.items()}
    arrays["action"] = arrays[TARGET_KEY] - qpos

    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["joint_order"] = order
            f.attrs["writer"] = "penspin"
            group = f.create_group(name)
            if trajectory_id is not None:
                group.attrs[_TRAJ_ATTR] = int(trajectory_id)
            if start_target is not None:
                start = _check(np.asarray(start_target)[None], _where(path, name, _START_ATTR),
                               TARGET_KEY, 1)
                group.attrs[_START_ATTR] = _reorder(TARGET_KEY, start, order, to_disk=True)[0]
            for key, arr in arrays.items():
                group.create_dataset(key, data=_reorder(key, arr, order, to_disk=True),
                                     **(_GZIP if key in _COMPRESSED else {}))
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)  # makes the rename itself durable
    return name


@functools.cache
def _fingertip_fk():
    """Built once, on first need: only original files lack fingertips, and torch is slow to load."""
    from penspin.task.kinematics import FingertipFK

    return FingertipFK()


def _read_group(group: h5py.Group, path: Path, order: str) -> Demo:
    name = group.name.lstrip("/")
    if "qpos" not in group:
        raise DatasetError(f"{_where(path, name, 'qpos')}: missing")
    target_key = next((k for k in (TARGET_KEY, _OLD_TARGET_KEY) if k in group), None)
    if target_key is None:
        raise DatasetError(f"{_where(path, name, TARGET_KEY)}: missing (nor "
                           f"{_OLD_TARGET_KEY!r}, the original's name, is present)")
    sources = {"qpos": "qpos", TARGET_KEY: target_key}
    sources.update({k: k for k in group if k not in ("qpos", TARGET_KEY, _OLD_TARGET_KEY)})
    arrays = {}
    for canonical, key in sources.items():
        item = group[key]
        if not isinstance(item, h5py.Dataset):
            raise DatasetError(f"{_where(path, name, key)}: expected a dataset, found a group")
        length = len(arrays["qpos"]) if arrays else None
        arr = _check(item[()], _where(path, name, key), canonical, length)
        arrays[canonical] = _reorder(canonical, arr, order, to_disk=False)
    qpos, target = arrays.pop("qpos"), arrays.pop(TARGET_KEY)
    action = arrays.pop("action", None)
    tips = arrays.pop(_TIPS_KEY, None)
    if tips is None:
        import torch

        with torch.no_grad():
            tips = _fingertip_fk()(torch.as_tensor(qpos, dtype=torch.float32)).numpy()
    start = group.attrs.get(_START_ATTR)
    if start is not None:
        start = _reorder(TARGET_KEY, _check(np.asarray(start)[None], _where(path, name,
                         _START_ATTR), TARGET_KEY, 1), order, to_disk=False)[0]
    traj = group.attrs.get(_TRAJ_ATTR)
    return Demo(name=name, qpos=qpos, target=target,
                action=target - qpos if action is None else action,
                finger_tip_pose=tips, extras=arrays,
                trajectory_id=None if traj is None else int(traj), start_target=start)


def load_demos(path_or_folder) -> list[Demo]:
    """Every demonstration in the file (a folder: its ``real_data.h5``), by group index."""
    path = _resolve(path_or_folder)
    if not path.is_file():
        hint = (f" (the folder holds neither {FILE_NAME} nor {FULL_FILE_NAME})"
                if Path(path_or_folder).is_dir() else "")
        raise DatasetError(f"{path}: no such file{hint}")
    with _open(path) as f:
        order = _joint_order(f, path)
        groups = _demo_groups(f)
        if not groups:
            raise DatasetError(f"{path}: no {GROUP_PREFIX}* groups, so no demonstrations")
        return [_read_group(f[name], path, order) for _, name in groups]


def demo_count(path) -> int:
    """How many demonstrations the file (or folder) holds; 0 when there is no file yet."""
    path = _resolve(path)
    if not path.exists():
        return 0
    with _open(path) as f:
        return len(_demo_groups(f))
