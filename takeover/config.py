"""Typed configuration: frozen dataclasses with a docstring-like ``help`` and a valid range per
field, built strictly from dicts / YAML. A typo, a wrong type, a non-finite number or an
out-of-range value stops before anything runs, naming the key, the allowed values and the
closest valid key. Plugin keyword arguments (a gate's ``high``, a human's ``seed``) are
checked the same way against the plugin's own signature (``check_kwargs``).

Also the project's seed blocks, so no number in a report is tuned on the seeds it reports.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from takeover.registry import closest

C = TypeVar("C")

# --- seed blocks -------------------------------------------------------------------------------
DEV_SEEDS = range(0, 10_000)
"""Development, tests and tuning."""
TRAIN_SEED = 100_000
"""Training of the shipped agents: ``100_000..199_999``."""
CALIBRATION_SEED = 200_000
"""Calibration (thresholds, conformal sets): ``200_000..299_999``."""
HELD_OUT_SEED = 1_000_000
"""Held-out evaluation and every number in a report: ``1_000_000`` upward. No test uses it."""

MAX_YAML_BYTES = 4 << 20
MAX_YAML_DEPTH = 32
"""A config nests 3 levels; 32 leaves room for plugin kwargs and refuses a nesting bomb
before the parser recurses (``RecursionError``)."""


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key and the fix."""


def option(default: Any, help: str, *, range: tuple[Any, Any] | None = None,
           choices: Any = None, factory: Callable[[], Any] | None = None,
           infinite: bool = False) -> Any:
    """A config field: ``range=(lo, hi)`` is inclusive (``None`` for an open end);
    ``choices`` lists the allowed values (a callable returning them is looked up late, so
    registries can grow after the class is defined). Numbers must be finite unless
    ``infinite=True`` (document what ``inf`` means in ``help``); NaN is never accepted."""
    meta = {"help": help, "range": range, "choices": choices, "infinite": infinite}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, infinite: bool = False) -> Any:
    """Check ``value`` against annotation ``tp``; allow int -> float and list -> tuple.
    A float must be finite (``infinite=True`` admits +-inf, never NaN)."""
    if isinstance(tp, str):  # an annotation that could not be resolved: take it as Any
        tp = Any
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, key, infinite)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{key}: {value!r} is not any of {_union_name(tp)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
            items = [_coerce(v, a, f"{key}[{i}]", infinite)
                     for i, (v, a) in enumerate(zip(value, args))]
        else:
            arg = args[0] if args else Any
            items = [_coerce(v, arg, f"{key}[{i}]", infinite) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)  # free-form (plugin kwargs): checked against the plugin's signature
    if tp is Any:
        check_finite(value, key)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not infinite):
            raise ConfigError(f"{key}={value!r}: expected a finite number"
                              + ("" if math.isnan(value) else
                                 " (infinity is not a documented value here)"))
        return value
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
        if "\0" in value:
            raise ConfigError(f"{key}: a string may not contain a NUL byte")
        return value
    if isinstance(tp, type) and tp.__module__ == "typing" and tp.__name__ == "Literal":
        return value  # pragma: no cover
    return value


def _union_name(tp: Any) -> str:
    return " | ".join(_type_name(a) for a in typing.get_args(tp))


def check_finite(value: Any, key: str) -> None:
    """Refuse NaN and infinity anywhere inside ``value`` (mappings and lists too)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: expected a finite number")
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{key}[{i}]")


def check_field(cfg: Any, f: dataclasses.Field[Any], where: str = "") -> None:
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
        value = _coerce(getattr(cfg, f.name), hints[f.name], key,
                        f.metadata.get("infinite", False))
        object.__setattr__(cfg, f.name, value)
        check_field(cfg, f, where)


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build ``cls`` from a mapping, refusing unknown keys (naming the closest valid one)."""
    data = dict(data or {})
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # C is a dataclass
    names = [f.name for f in fields]
    for key in data:
        if key not in names:
            full = f"{where}.{key}" if where else key
            raise ConfigError(
                f"unknown config key {full!r}.{closest(str(key), names)} "
                f"Valid keys{' of ' + where if where else ''}: {', '.join(names)}"
            )
    hints = typing.get_type_hints(cls)
    infinite = {f.name: f.metadata.get("infinite", False) for f in fields}
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(value, hints[key], full, infinite[key])
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

    out: dict[str, Any] = plain(cfg)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``: UTF-8, at most ``MAX_YAML_BYTES`` and ``MAX_YAML_DEPTH``
    levels deep, safe-loaded (no tags that build objects). An empty file is ``{}``: the
    embedded default."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r} is a directory, not a YAML file")
    try:
        raw = path.read_bytes()[: MAX_YAML_BYTES + 1]
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError(f"config file {str(path)!r} is larger than {MAX_YAML_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte {e.start}: "
                          f"{raw[e.start:e.start + 1]!r}); save it as UTF-8") from None
    data = parse_yaml(text, f"config file {str(path)!r}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so ``lr: 1e-3`` further down would quietly override an earlier ``lr``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with the nesting depth checked on the event stream first, so a
    deeply nested document is a ``ConfigError``, not a ``RecursionError``."""
    if "\0" in text:
        raise ConfigError(f"{what} contains a NUL byte: not a YAML text file")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{what} nests deeper than {MAX_YAML_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                raise ConfigError(f"{what} uses a YAML alias (*{event.anchor}); write the "
                                  "values out (aliases can expand without bound)")
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as e:  # one line: where and what, not PyYAML's caret art
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} is not valid YAML{where}: "
                          f"{e.problem or e.context or 'unreadable'}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} is not valid YAML: {e}") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ConfigError(f"{what} nests too deeply") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict copy."""
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. seeds=5)")
        key, raw = item.split("=", 1)
        value = parse_yaml(raw, f"override {item!r}: the value")
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key part (write section.key=value)")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return out


# --- plugin keyword arguments ---------------------------------------------------------------
def _target(factory: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose annotations type ``factory``'s keywords (a class's ``__init__``,
    a partial's function)."""
    import functools

    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type):
        init: Callable[..., Any] = factory.__init__  # type: ignore[misc]
        return init
    return factory


def plugin_params(factory: Callable[..., Any]) -> tuple[dict[str, tuple[Any, Any]], bool]:
    """``({keyword: (annotation, default)}, open)`` of a plugin factory, read from its
    signature and annotations; ``open`` is True when it takes ``**kwargs`` (names beyond the
    listed ones cannot be checked)."""
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(_target(factory))
    except Exception:  # noqa: BLE001 - an unresolvable annotation is checked as Any
        hints = {}
    params, open_ = {}, False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            params[name] = (hints.get(name, Any), p.default)
    return params, open_


def check_kwargs(factory: Callable[..., Any], kwargs: Mapping[str, Any], where: str,
                 what: str) -> dict[str, Any]:
    """Check ``kwargs`` of a plugin against its factory's signature before anything runs:
    an unknown name (naming the closest valid one), a missing required one, a wrong type or
    a non-finite number is a ``ConfigError`` naming ``where.key``. Returns the kwargs
    coerced to the annotated types (int -> float, list -> tuple). A float keyword whose
    default is infinite documents that infinity is allowed."""
    params, open_ = plugin_params(factory)
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keyword arguments, got {kwargs!r}")
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        full = f"{where}.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{full}: {key!r} is not a keyword name")
        if key not in params:
            if open_:
                check_finite(value, full)
                out[key] = value
                continue
            raise ConfigError(
                f"{full}: {what} takes no keyword {key!r}.{closest(key, list(params))} "
                f"Valid: {', '.join(params) or '(none)'}"
            )
        tp, default = params[key]
        infinite = isinstance(default, float) and math.isinf(default)
        out[key] = _coerce(value, tp, full, infinite)
    missing = [n for n, (_, d) in params.items()
               if d is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise ConfigError(f"{where}: {what} needs {', '.join(missing)}")
    return out
