"""Helpers shared by the subcommands: config resolution and ``--keys`` listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from penspin.config import apply_overrides, key_docs, valid_keys


def describe(cfg: Any) -> str:
    """One line per key: its current value and its doc (meaning, unit)."""
    docs = key_docs(cfg)
    lines = []
    for key in valid_keys(cfg):
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        lines.append(f"{key}={value}" + (f"  # {docs[key]}" if docs.get(key) else ""))
    return "\n".join(lines)


def resolve(default: Any, args) -> Any | None:
    """Apply the command's overrides; print the keys and return None for ``--keys``."""
    if getattr(args, "keys", False):
        print(describe(default))
        return None
    return apply_overrides(default, list(getattr(args, "overrides", [])))


def run_dir(args, default: str) -> str:
    """``--run-dir`` if given; else a resumed checkpoint's own folder; else ``default``."""
    if args.run_dir:
        return args.run_dir
    if getattr(args, "resume", ""):
        return str(Path(args.resume).parent)
    return default
