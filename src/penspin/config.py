"""Dataclass configs with ``key=value`` command-line overrides.

Every command takes overrides such as ``env.num_envs=64 ppo.learning_rate=5e-3``. Unknown keys and
values of the wrong type fail with a message that lists what is valid, because a silently ignored
override (the original's no-op ablation flags) wastes a day of compute.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import typing
from typing import Any


class UserFacingError(Exception):
    """An error whose message is the whole story for the user (the CLI prints it, no traceback)."""


class ConfigError(UserFacingError, ValueError):
    """A configuration value or key that cannot be used."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(text: str, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and type(None) in args):
        inner = [a for a in args if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _parse_value(text, inner[0], key)
    if tp is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a boolean (true/false), got {text!r}")
    if tp in (int, float, str):
        try:
            return tp(float(text)) if tp is int and "e" in text.lower() else tp(text)
        except ValueError:
            raise ConfigError(f"{key}: expected {tp.__name__}, got {text!r}") from None
    if origin in (tuple, list):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raw = [t for t in text.strip("[]()").split(",") if t.strip()]
        if not isinstance(raw, list):
            raw = [raw]
        elem = args[0] if args else str
        values = [_parse_value(str(v).strip(), elem, key) for v in raw]
        return tuple(values) if origin is tuple else values
    raise ConfigError(f"{key}: cannot parse a value of type {tp}")


def valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted keys a config accepts, for error messages and ``--help``."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's one-line doc: the comment after it on its line, else the comment lines just
    above it (the source is the one place a field is documented; ``--keys`` prints it)."""
    inherited = {}
    for base in cls.__mro__[1:]:  # a subclass's fields may be documented in a base config
        if dataclasses.is_dataclass(base):
            inherited = {**field_docs(base), **inherited}
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return inherited
    names = {f.name for f in dataclasses.fields(cls)}
    docs, above = dict(inherited), []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        m = _FIELD_LINE.match(line)
        doc = (m.group(2) or " ".join(above)).strip() if m else ""
        if m and m.group(1) in names and (doc or m.group(1) not in docs):
            docs[m.group(1)] = doc or docs.get(m.group(1), "")
        above = []
    return docs


def key_docs(cfg: Any, prefix: str = "") -> dict[str, str]:
    """Every dotted key's doc line (empty where a field has none)."""
    out = {}
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(key_docs(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = docs.get(f.name, "")
    return out


def set_key(cfg: Any, key: str, text: str) -> Any:
    """Return a copy of ``cfg`` with the dotted ``key`` parsed from ``text``."""
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(cfg)}
    if head not in names:
        raise ConfigError(
            f"unknown config key {key!r}; valid keys: {', '.join(valid_keys(cfg))}"
        )
    current = getattr(cfg, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"unknown config key {key!r}: {head!r} has no sub-keys")
        return dataclasses.replace(cfg, **{head: set_key(current, rest, text)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{key!r} is a group; set one of its keys, e.g. {key}.<name>=...")
    value = _parse_value(text, _field_types(type(cfg))[head], key)
    return dataclasses.replace(cfg, **{head: value})


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply ``key=value`` strings in order and validate the result."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value")
        cfg = set_key(cfg, key.strip(), text.strip())
    validate(cfg)
    return cfg


def validate(cfg: Any) -> None:
    """Run ``check()`` on every nested config that defines it."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value)
    check = getattr(cfg, "check", None)
    if callable(check):
        check()


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (JSON- and ``weights_only``-safe)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a config saved by :func:`to_dict`, ignoring nothing silently."""
    hints = _field_types(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        value = data[f.name]
        if dataclasses.is_dataclass(tp):
            value = from_dict(tp, value)
        elif typing.get_origin(tp) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys in saved config: {sorted(unknown)}")
    return cls(**kwargs)
