"""Counter-based random streams: every draw of an episode is a pure function of the world's
key (from its seed), the episode's number and the stream's tag, so a reset runs inside the
compiled kernel, needs no Python object per world, and a snapshot's RNG state is two
integers (``key``, next ``episode``).

A stream is SplitMix64 (Steele, Lea & Flood 2014, the seeding generator of xoshiro) started
from a mix of (key, episode, tag): its state is one ``uint64`` that advances by the golden
gamma per draw, each output the state passed through the MurmurHash3-style finaliser. It
passes BigCrush, which is far more than an episode's few hundred uniforms need.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_M1, _M2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
KEY, EPISODE = 0, 1
"""Columns of a world's RNG row (``(N, 2)`` uint64): its key, and the episode its next reset
draws (a seeded reset restarts it at 0)."""


def _mix_py(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & MASK
    z = ((z ^ (z >> 27)) * _M2) & MASK
    return z ^ (z >> 31)


def seed_key(seed: int) -> int:
    """The key of ``reset(seed=seed)``: a non-negative integer of any size, hashed 64 bits
    at a time (so nearby seeds give unrelated keys)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    seed = int(seed)
    key = _mix_py(GOLDEN)
    while True:
        key = _mix_py(((key ^ (seed & MASK)) + GOLDEN) & MASK)
        seed >>= 64
        if not seed:
            return key


def entropy_keys(n: int) -> np.ndarray:
    """``n`` keys from the operating system's entropy (a reset without any seed)."""
    return np.random.SeedSequence().generate_state(n, np.uint64)


@njit(cache=True)
def mix(z):
    """SplitMix64's finaliser: a bijection of ``uint64`` that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def start(st, key, episode, tag):
    """Point ``st`` (a 1-element ``uint64`` array) at stream ``tag`` of ``episode`` of the
    world with ``key``."""
    st[0] = mix(mix(np.uint64(key) + np.uint64(GOLDEN) * (np.uint64(episode) + np.uint64(1)))
                ^ np.uint64(tag))


@njit(cache=True)
def uniform(st):
    """The next draw of stream ``st``: a float in [0, 1) with 53 random bits."""
    st[0] += np.uint64(GOLDEN)
    return float(mix(st[0]) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
