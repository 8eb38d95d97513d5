"""Every hyperparameter check, run once in plain Python where a value enters.

One message style: ``Invalid <name>: <value> (must be <rule>).``, naming the argument
as the caller spelled it. Only host values are checked: Python and NumPy numbers and
arrays. A JAX array (traced, or on a device, as ``inject_hyperparams`` passes) or a
schedule (a callable) is accepted as is: reading it would cost a host sync, and nothing
inside ``update`` ever branches on its value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import numpy as np


def is_python_number(value: Any) -> bool:
    """A Python ``int``, ``float`` (or other ``numbers.Real``) that is not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(name: str, value: Any, rule: str) -> None:
    raise ValueError(f"Invalid {name}: {value!r} (must be {rule}).")


def concrete(value: Any) -> float | None:
    """The value as a Python float, or ``None`` when it is traced, on a device or a
    schedule. Raises ``ValueError`` for a host value that is not a real scalar."""
    if callable(value) or isinstance(value, jax.Array):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # an abstract or otherwise opaque value: not ours to check
        return None
    if arr.shape != () or arr.dtype.kind not in "biuf":
        raise ValueError(f"expected a real scalar, got {value!r}")
    return float(arr)


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


def in_range(name: str, value: Any, low: float, high: float) -> None:
    """Check ``low <= value <= high`` for a concrete ``value``."""
    v = finite(name, value)
    if v is not None and not low <= v <= high:
        _fail(name, value, f"in [{low}, {high}]")


def flag(name: str, value: Any) -> None:
    """Check that ``value`` is a ``bool`` (``"no"`` is truthy: never guess)."""
    if not isinstance(value, bool | np.bool_):
        _fail(name, value, "a bool")


def pair(name: str, value: Any) -> tuple[Any, Any]:
    """Unpack a pair such as ``etas`` or ``step_sizes``, naming it if it is not one."""
    try:
        a, b = value
    except (TypeError, ValueError):
        _fail(name, value, "a pair of two numbers")
    return a, b


def rprop_etas(names: tuple[str, str], eta_minus: Any, eta_plus: Any) -> None:
    """Check ``0 < eta_minus < 1 < eta_plus``; ``names`` are the caller's spellings (the
    two arguments, or one pair's name twice), and a swapped pair is called reversed."""
    em, ep = finite(names[0], eta_minus), finite(names[1], eta_plus)
    is_pair = names[0] == names[1]
    shown = (eta_minus, eta_plus) if is_pair else None
    if em is not None and ep is not None and 0.0 < ep < 1.0 < em:
        rule = "(eta_minus, eta_plus) with 0 < eta_minus < 1 < eta_plus: reversed"
        _fail(names[0], shown if is_pair else eta_minus, rule)
    if em is not None and not 0.0 < em < 1.0:
        _fail(names[0], shown if is_pair else eta_minus, "in (0, 1)" + " for eta_minus" * is_pair)
    if ep is not None and not ep > 1.0:
        _fail(names[1], shown if is_pair else eta_plus, "> 1" + " for eta_plus" * is_pair)


def step_size_bounds(names: tuple[str, str], low: Any, high: Any) -> None:
    """Check ``0 <= low <= high < inf``; ``names`` as in :func:`rprop_etas`."""
    lo, hi = finite(names[0], low), finite(names[1], high)
    is_pair = names[0] == names[1]
    shown = (low, high) if is_pair else None
    if lo is not None and not lo >= 0.0:
        _fail(names[0], shown if is_pair else low, ">= 0" + " for the minimum" * is_pair)
    if lo is not None and hi is not None and not lo <= hi:
        if is_pair:
            _fail(names[0], shown, "(min, max) with min <= max: reversed")
        _fail(names[1], high, f">= {names[0]} = {low!r}")


def one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    """Check that ``value`` is one of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        _fail(name, value, f"one of {', '.join(options)}")


def float_dtype(name: str, value: Any) -> np.dtype | None:
    """``None``, or ``value`` (a dtype or its name) as a real floating ``np.dtype``:
    the ``accumulator_dtype`` of a block's per-parameter state."""
    if value is None:
        return None
    try:
        dtype = jax.numpy.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jax.numpy.issubdtype(dtype, jax.numpy.floating):
        _fail(name, value, "None or a real floating dtype, e.g. jnp.float32")
    return dtype
