"""Checkpoints as plain ``.pt`` dicts that load with ``torch.load(weights_only=True)``.

Writes are atomic (temporary file + ``os.replace``) so a run killed mid-save leaves the previous
checkpoint intact. Loads fail with a message that says what is wrong and which keys differ,
instead of a pickle traceback or a silent half-load.
"""

from __future__ import annotations

import collections
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from penspin.config import UserFacingError

FORMAT_VERSION = 1
_NDARRAY = "__ndarray__"


class CheckpointError(UserFacingError, RuntimeError):
    """A checkpoint that cannot be used, with the reason in the message."""


def to_plain(obj: Any, where: str = "payload") -> Any:
    """Recursively turn ``obj`` into tensors and plain values; numpy arrays become tagged tensors.

    Raises TypeError naming the offending key, at save time rather than at the next load.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{where}: numpy object arrays cannot be stored in a checkpoint")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj)).clone()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        cls = collections.OrderedDict if isinstance(obj, collections.OrderedDict) else dict
        return cls((k, to_plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        values = [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return values if isinstance(obj, list) else tuple(values)
    raise TypeError(
        f"{where}: {type(obj).__name__} cannot be stored in a checkpoint "
        "(only tensors, numpy arrays and plain values)"
    )


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain`: tagged tensors become numpy arrays again."""
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].cpu().numpy()
        cls = collections.OrderedDict if isinstance(obj, collections.OrderedDict) else dict
        return cls((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_plain(v) for v in obj)
    return obj


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Atomically write ``payload`` (must have a ``kind``) with the current format version."""
    if "kind" not in payload:
        raise ValueError("checkpoint payload needs a 'kind' (e.g. 'oracle')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_plain({**payload, "format_version": FORMAT_VERSION})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: str | os.PathLike, expected_kind: str | None = None, map_location: Any = "cpu"
) -> dict:
    """Load a penspin checkpoint safely (``weights_only``) and check its kind and version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch reports damage as RuntimeError, KeyError, EOFError, ...
        if isinstance(e, pickle.UnpicklingError) and "global" in str(e).lower():
            raise CheckpointError(
                f"{path}: refused to load, it holds Python objects other than tensors and plain "
                "values; only a trusted file may be converted with a dedicated importer"
            ) from None
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path}: unreadable checkpoint, truncated or corrupt "
            f"({type(e).__name__}: {first_line})"
        ) from None
    if not isinstance(payload, dict) or "kind" not in payload:
        hint = ""
        if isinstance(payload, dict) and "running_mean_std" in payload:
            hint = " It looks like an original PenSpin .pth; import it instead of loading it."
        raise CheckpointError(f"{path}: not a penspin checkpoint (no 'kind' field).{hint}")
    if expected_kind is not None and payload["kind"] != expected_kind:
        raise CheckpointError(
            f"{path}: is a {payload['kind']!r} checkpoint, but a {expected_kind!r} one is needed"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is not supported "
            f"(this penspin reads {FORMAT_VERSION})"
        )
    return from_plain(payload)


def diff_keys(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested plain dicts, with both values."""
    out = []
    for k in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(k, "<missing>"), current.get(k, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: checkpoint {a!r}, current {b!r}")
    return out


def load_state_checked(module: nn.Module, state: dict, what: str = "model") -> None:
    """``load_state_dict`` that names every missing, unexpected or mis-shaped key."""
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)}, {what} {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        raise CheckpointError(f"{what} does not match the checkpoint: " + "; ".join(problems))
    module.load_state_dict(state)


def model_from_payload(cls: type[nn.Module], payload: dict, what: str = "model") -> nn.Module:
    """``cls(**model_args)`` holding the payload's weights (checked key by key)."""
    model = cls(**payload["model_args"])
    load_state_checked(model, payload["model"], what=what)
    return model


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states, for exact resume."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured (after a :func:`from_plain` round trip)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


RELEASE_KEYS = ("kind", "config", "model_args", "model", "counters", "best_reward")


def release_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a checkpoint without optimiser, RNG and env state: what sharing a policy needs."""
    payload = load_checkpoint(src)
    slim = {k: payload[k] for k in RELEASE_KEYS if k in payload}
    slim["released_from"] = str(src)
    return save_checkpoint(dst, slim)
