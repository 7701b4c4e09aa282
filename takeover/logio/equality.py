"""Bit-exact equality of records (``==`` on dataclasses holding arrays is ambiguous)."""

from __future__ import annotations

import struct
from dataclasses import fields
from typing import Any

import numpy as np

from takeover.records import StepRecord


def _same(a: Any, b: Any) -> bool:
    a = a.item() if isinstance(a, np.generic) else a
    b = b.item() if isinstance(b, np.generic) else b
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def records_equal(a: StepRecord, b: StepRecord) -> bool:
    """Every field equal, floats and arrays bit for bit, value types included (an ``int``
    info value does not equal the ``float`` one); dict key order is ignored."""
    return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in fields(StepRecord))
