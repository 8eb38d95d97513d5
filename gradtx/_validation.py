"""Hyperparameter checks, run once in plain Python when a transform is built.

Only host values are checked: Python and NumPy numbers and arrays. A JAX array (traced,
or on a device, as ``inject_hyperparams`` passes) or a schedule (a callable) is accepted
as is: reading it would cost a host sync, and nothing inside ``update`` ever branches on
its value.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def concrete(value: Any) -> float | None:
    """The value as a Python float, or ``None`` when it is traced or a schedule."""
    if callable(value) or isinstance(value, jax.Array):
        # a schedule, a tracer, or a device array (as inject_hyperparams passes): reading
        # its value would be a device-to-host copy at every build, so it is taken as is
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # an abstract or otherwise opaque value: not ours to check
        return None
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValueError(f"expected a real scalar, got {value!r}")
    return float(arr)


def _fail(name: str, value: Any, rule: str) -> None:
    raise ValueError(f"Invalid {name}: {value!r} (must be {rule}).")


def finite(name: str, value: Any) -> float | None:
    """Check that a concrete ``value`` is a finite real number; return it as a float."""
    try:
        v = concrete(value)
    except ValueError:
        _fail(name, value, "a real scalar")
    if v is not None and not math.isfinite(v):
        _fail(name, value, "finite")
    return v


def non_negative(name: str, value: Any) -> None:
    """Check ``0 <= value < inf`` for a concrete ``value``."""
    v = finite(name, value)
    if v is not None and not v >= 0.0:
        _fail(name, value, ">= 0")


def positive(name: str, value: Any) -> None:
    """Check ``0 < value < inf`` for a concrete ``value``."""
    v = finite(name, value)
    if v is not None and not v > 0.0:
        _fail(name, value, "> 0")


def in_range(name: str, value: Any, low: float, high: float, *, closed: str = "[]") -> None:
    """Check ``low <= value <= high`` (``closed`` says which ends are included)."""
    v = finite(name, value)
    if v is None:
        return
    ok_low = v >= low if closed[0] == "[" else v > low
    ok_high = v <= high if closed[1] == "]" else v < high
    if not (ok_low and ok_high):
        _fail(name, value, f"in {closed[0]}{low}, {high}{closed[1]}")


def pair(name: str, value: Any) -> tuple[Any, Any]:
    """Unpack a pair such as ``etas`` or ``step_sizes``, naming it if it is not one."""
    try:
        a, b = value
    except (TypeError, ValueError):
        _fail(name, value, "a pair of two numbers")
    return a, b
