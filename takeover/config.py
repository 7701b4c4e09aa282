"""Typed configuration: frozen dataclasses with a docstring-like ``help`` and a valid range per
field, built strictly from dicts / YAML. A typo, a wrong type or an out-of-range value stops
before anything runs, naming the key, the allowed values and the closest valid key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from takeover.registry import closest

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key and the fix."""


def option(default: Any, help: str, *, range: tuple | None = None, choices=None,
           factory=None) -> Any:
    """A config field: ``range=(lo, hi)`` is inclusive (``None`` for an open end);
    ``choices`` lists the allowed values (a callable returning them is looked up late, so
    registries can grow after the class is defined)."""
    meta = {"help": help, "range": range, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; allow int -> float and list -> tuple."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return None
            try:
                return _coerce(value, arm, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not any of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            arg = args[0] if args else Any
            items = [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def check_field(cfg: Any, f: dataclasses.Field, where: str = "") -> None:
    key = f"{where}.{f.name}" if where else f.name
    value = getattr(cfg, f.name)
    choices = f.metadata.get("choices")
    if callable(choices):
        choices = choices()
    if choices is not None and value not in choices:
        hint = closest(value, list(choices)) if isinstance(value, str) else ""
        raise ConfigError(
            f"{key}={value!r} is not allowed.{hint} Allowed: {', '.join(map(repr, choices))}"
        )
    rng = f.metadata.get("range")
    if rng is not None:
        lo, hi = rng
        vals = value if isinstance(value, (tuple, list)) else (value,)
        for v in vals:
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise ConfigError(
                    f"{key}={value!r} is out of range: allowed [{lo if lo is not None else '-inf'}, "
                    f"{hi if hi is not None else 'inf'}]"
                )


def validate(cfg: Any, where: str = "") -> None:
    """Check every field's type, range and choices; call from ``__post_init__``."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        key = f"{where}.{f.name}" if where else f.name
        value = _coerce(getattr(cfg, f.name), hints[f.name], key)
        object.__setattr__(cfg, f.name, value)
        check_field(cfg, f, where)


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build ``cls`` from a mapping, refusing unknown keys (naming the closest valid one)."""
    data = dict(data or {})
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            full = f"{where}.{key}" if where else key
            raise ConfigError(
                f"unknown config key {full!r}.{closest(str(key), names)} "
                f"Valid keys{' of ' + where if where else ''}: {', '.join(names)}"
            )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict copy."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. seeds=5)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out
