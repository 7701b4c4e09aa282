"""Property-based tests at the env boundary (issue 15 item 9): whatever a caller passes as an
action or a config field, the env either takes it (a valid value) or refuses it with a
``ValueError`` that names the problem: never a silent accept, never another exception, and a
refused action leaves the world untouched."""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takeover.config import ConfigError
from takeover.envs.config import HighwayConfig
from takeover.envs.highway import HighwayEnv
from takeover.envs.vector import HighwayVectorEnv

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 1.0), st.complex_numbers(max_magnitude=2.0), st.text(max_size=4),
    st.binary(max_size=3), st.sampled_from([np.bool_(True), np.float32("nan"), np.int8(1),
                                            np.float64(0.5), np.str_("0.5")]))
_NUMBERS = st.one_of(st.floats(-3.0, 3.0), st.sampled_from([math.nan, math.inf, -math.inf]))
_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8,
                           np.bool_, np.complex64, np.str_, object])


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    shape = draw(st.sampled_from([(), (1,), (2,), (3,), (1, 2), (2, 1), (2, 2), (0,)]))
    dtype = draw(_DTYPES)
    values = draw(st.lists(_NUMBERS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    data = np.array(values, dtype=np.float64).reshape(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        return data.astype(dtype) if dtype not in (np.str_, object) else data.astype(dtype)


ACTIONS = st.one_of(_SCALARS, _arrays(), st.lists(_SCALARS, max_size=3),
                    st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)),
                    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _real(v: object) -> bool:
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)))


def _valid_continuous(a: object) -> bool:
    """The oracle, written independently of ``check_action``: two real numbers in [-1, 1]."""
    if isinstance(a, np.ndarray):
        if a.shape != (2,) or a.dtype.kind not in "fiu" and a.dtype != object:
            return False
        a = a.tolist()
    if not isinstance(a, (list, tuple)) or len(a) != 2 or not all(_real(v) for v in a):
        return False
    return all(-1.0 <= float(v) <= 1.0 for v in a)


def _valid_discrete(a: object) -> bool:
    if isinstance(a, np.ndarray) and a.shape == (1,):
        a = a[0]
    return _real(a) and isinstance(a, (int, np.integer)) and 0 <= int(a) < 5


@pytest.fixture(scope="module")
def envs() -> dict[str, HighwayEnv]:
    out = {}
    for kind in ("continuous", "discrete"):
        env = HighwayEnv(scenario="none", action_type=kind, duration=3600.0)
        env.reset(seed=0)
        out[kind] = env
    return out


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
@SETTINGS
@given(action=ACTIONS)
def test_env_takes_valid_actions_and_refuses_every_other_one(envs, kind, action):
    env = envs[kind]
    valid = (_valid_continuous if kind == "continuous" else _valid_discrete)(action)
    before = env.get_state().to_bytes()
    if valid:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:  # valid actions may crash the car: start the next episode
            env.reset(seed=0)
        return
    with pytest.raises(ValueError, match="action"):
        env.step(action)
    assert env.get_state().to_bytes() == before, "a refused action changed the world"


_VEC = {kind: HighwayVectorEnv(3, scenario="none", action_type=kind, duration=3600.0)
        for kind in ("continuous", "discrete")}
for _env in _VEC.values():
    _env.reset(seed=0)


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
@SETTINGS
@given(data=st.data())
def test_vector_env_refuses_actions_of_the_wrong_kind_shape_or_value(kind, data):
    env = _VEC[kind]
    n = env.num_envs
    if kind == "continuous":
        shape = data.draw(st.sampled_from([(n, 2), (n, 2), (n,), (2, n + 1), (n * 2,), ()]))
    else:
        shape = data.draw(st.sampled_from([(n,), (n,), (n, 1), (n + 1,), ()]))
    dtype = data.draw(_DTYPES)
    values = data.draw(st.lists(_NUMBERS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.array(values).reshape(shape).astype(dtype)
    if kind == "continuous":
        ok = (a.shape == (n, 2) and a.dtype.kind in "fiu"
              and bool(np.all(np.abs(a.astype(np.float64)) <= 1.0)))
    else:
        ok = a.shape == (n,) and a.dtype.kind in "iu" and bool(np.all((a >= 0) & (a < 5)))
    if ok:
        env.step(a)
    else:
        with pytest.raises(ValueError, match="action"):
            env.step(a)


def test_vector_env_names_a_ragged_action_list():
    with pytest.raises(ValueError, match="ragged"):
        _VEC["continuous"].step([[0.1], [0.1, 0.2], [0.0, 0.0]])


# --- config fields ----------------------------------------------------------------------
FIELDS = {f.name: f for f in dataclasses.fields(HighwayConfig)}
HINTS = typing.get_type_hints(HighwayConfig)
_WRONG_TYPE = [None, "x", "", [], {}, {"a": 1}, 1 + 2j, b"3", object(), np.array([1.0, 2.0])]


def _bad_values(name: str) -> st.SearchStrategy[object]:
    """Values the field must refuse: non-finite, wrong type, and out of its range."""
    tp = HINTS[name]
    meta = FIELDS[name].metadata
    optional = type(None) in typing.get_args(tp)
    bad: list[st.SearchStrategy[object]] = [
        st.sampled_from([v for v in _WRONG_TYPE if not (optional and v is None)])]
    finite = st.sampled_from([math.nan, math.inf, -math.inf])
    args = typing.get_args(tp)
    if tp in (int, float) or float in args:
        bad += [finite, st.booleans()]
    if tp is int:
        bad += [st.floats(-1e6, 1e6).filter(lambda v: not float(v).is_integer())]
    if tp == tuple[float, float]:
        bad += [st.tuples(finite, st.floats(0, 10)), st.tuples(st.floats(0, 10), finite),
                st.lists(st.floats(0, 10), max_size=1), st.lists(st.floats(0, 10), min_size=3,
                                                                 max_size=4)]
    rng = meta.get("range")
    if rng is not None:
        lo, hi = rng
        number = st.integers if tp is int else st.floats
        out = []
        if lo is not None:
            out.append(number(max_value=lo - 1) if tp is int else
                       st.floats(max_value=lo, exclude_max=True, allow_nan=False,
                                 allow_infinity=False))
        if hi is not None:
            out.append(number(min_value=hi + 1) if tp is int else
                       st.floats(min_value=hi, exclude_min=True, allow_nan=False,
                                 allow_infinity=False))
        if tp == tuple[float, float]:
            bad += [st.tuples(o, o) for o in out]
        else:
            bad += out
    if meta.get("choices"):
        bad.append(st.text(max_size=8).filter(lambda s: s not in SCENARIOS_AND_TYPES))
    return st.one_of(bad)


SCENARIOS_AND_TYPES = set(HighwayConfig.__dataclass_fields__["scenario"].metadata["choices"]) | {
    "continuous", "discrete"}


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_config_field_refuses_bad_values_naming_the_field(name, data):
    value = data.draw(_bad_values(name), label=name)
    for build in (lambda: HighwayEnv(**{name: value}),
                  lambda: HighwayEnv(config={name: value})):
        with pytest.raises(ConfigError) as err:
            build()
        assert name in str(err.value), f"{name}={value!r}: the error must name the field"


def test_config_errors_are_value_errors():
    """Callers catching ``ValueError`` (Gymnasium's convention) see config errors too."""
    assert issubclass(ConfigError, ValueError)


def test_vector_env_refuses_the_integer_whose_absolute_value_is_negative():
    """NaN cast to int64 is INT64_MIN, and ``abs(INT64_MIN)`` overflows to itself (< 1):
    the range check must not go through ``abs`` (hypothesis found it)."""
    env = _VEC["continuous"]
    a = np.zeros((env.num_envs, 2), dtype=np.int64)
    a[-1, -1] = np.iinfo(np.int64).min
    with pytest.raises(ValueError, match="outside"):
        env.step(a)
