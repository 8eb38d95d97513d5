"""Every hyperparameter check, run once in plain Python where a value enters.

One message style: ``Invalid <name>: <value> (must be <rule>).``, naming the argument
as the caller spelled it. Every concrete value is checked where it enters: Python and
NumPy numbers, and concrete JAX arrays (read once, a host sync at construction, never
inside a step). Exempt: traced values (inside ``jit``, ``vmap``, ...; refused where they
would fix a schedule's form), schedules (their values are checked by :func:`schedule`),
and values passed while :func:`trusted` is active: ``inject_hyperparams`` rebuilds its
inner transform inside every ``update`` from values it already checked.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_python_number(value: Any) -> bool:
    """A Python ``int``, ``float`` (or other ``numbers.Real``) that is not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(name: str, value: Any, rule: str, error: type[Exception] = ValueError) -> None:
    raise error(f"Invalid {name}: {value!r} (must be {rule}).")


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("gradtx_trusted", default=False)


@contextlib.contextmanager
def trusted() -> Iterator[None]:
    """Within this block no value is read or checked (values already checked once)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _is_real_dtype(dtype: Any) -> bool:
    """bool, integer or real floating, bfloat16 and float16 too (NumPy's ``kind`` 'V')."""
    return dtype == np.bool_ or (
        jnp.issubdtype(dtype, jnp.number) and not jnp.issubdtype(dtype, jnp.complexfloating)
    )


def concrete(value: Any) -> float | None:
    """The value as a Python float, or ``None`` when it is traced, a schedule or passed
    under :func:`trusted`. Raises ``ValueError`` for a value that is not a real scalar."""
    if callable(value) or _TRUSTED.get() or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return None  # spread over hosts: reading it would need every process
    try:
        arr = np.asarray(value)
    except Exception:  # an abstract or otherwise opaque value: not ours to check
        return None
    if arr.shape != () or not _is_real_dtype(arr.dtype):
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


Rule = Callable[[str, Any], Any]


def _holds(name: str, value: Any, ok: Callable[[float], bool], rule: str) -> None:
    v = finite(name, value)
    if v is not None and not ok(v):
        _fail(name, value, rule)


def _concrete_only(name: str, value: Any) -> None:
    if isinstance(value, jax.core.Tracer):  # read in Python: builders branch on it
        _fail(name, value, "concrete: build it outside jax.jit and jax.vmap", TypeError)


def number(name: str, value: Any, rule: Rule = finite, static: bool = False) -> None:
    """A schedule's number checked by ``rule``; bools, functions (tracers if ``static``) refused."""
    if static:
        _concrete_only(name, value)
    if callable(value) or isinstance(value, bool) or getattr(value, "dtype", 0) == np.bool_:
        _fail(name, value, "a finite real number")
    rule(name, value)


def steps(name: str, value: Any, low: int | None = None, traced: bool = False) -> Any:
    """An integer step count (int-valued numbers too; no bool) ``>= low``, in int32's range
    (counts are int32), as a Python ``int``; traced only if ``traced``, else ``TypeError``."""
    if isinstance(value, jax.core.Tracer) and traced:
        return value
    _concrete_only(name, value)
    try:  # a string, None, a sequence, ... raise or give no real dtype
        dtype = np.asarray(value).dtype if np.ndim(value) == 0 else np.dtype(object)
        x = float(value) if dtype != np.bool_ and _is_real_dtype(dtype) else 0.5
    except (TypeError, ValueError):
        x = 0.5
    lowest = -(2**31) if low is None else low
    if not (math.isfinite(x) and x == int(x) and lowest <= x < 2**31):
        rule = "an integer" + ("" if low is None else f" >= {low}")
        _fail(name, value, rule + " and < 2**31 (steps are counted in int32)")
    return int(x)


def non_negative(name: str, value: Any) -> None:
    """Check ``0 <= value < inf`` for a concrete ``value``."""
    _holds(name, value, lambda v: v >= 0.0, ">= 0")


def positive(name: str, value: Any) -> None:
    """Check ``0 < value < inf`` for a concrete ``value``."""
    _holds(name, value, lambda v: v > 0.0, "> 0")


def in_range(name: str, value: Any, low: float, high: float) -> None:
    """Check ``low <= value <= high`` for a concrete ``value``."""
    _holds(name, value, lambda v: low <= v <= high, f"in [{low}, {high}]")


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


def _pair_check(names, values, labels, ok_each, ok_order, rule) -> None:
    """Check a pair of bounds (``names``: the caller's spellings, two arguments or one pair's
    name twice); a failure says which element breaks ``rule``, or that the two are reversed."""
    a, b = (finite(n, v) for n, v in zip(names, values))
    is_pair = names[0] == names[1]
    if is_pair:
        rule = f"({labels[0]}, {labels[1]}) with {rule}"
    if a is not None and b is not None and not ok_order(a, b) and ok_order(b, a):
        if is_pair:
            _fail(names[0], tuple(values), rule + "; the pair is reversed")
        _fail(names[1], values[1], f"{rule}; it and {names[0]} = {values[0]!r} are reversed")
    for i, (name, v, x) in enumerate(zip(names, values, (a, b))):
        if x is not None and not ok_each[i](x):
            if is_pair:
                _fail(name, tuple(values), f"{rule}; {labels[i]} = {v!r} breaks it")
            _fail(name, v, rule)
    if a is not None and b is not None and not ok_order(a, b):
        _fail(names[1], tuple(values) if is_pair else values[1], rule)


def rprop_etas(names: tuple[str, str], eta_minus: Any, eta_plus: Any) -> None:
    """Check ``0 < eta_minus < 1 < eta_plus``."""
    _pair_check(
        names,
        (eta_minus, eta_plus),
        ("eta_minus", "eta_plus"),
        (lambda x: 0.0 < x < 1.0, lambda x: x > 1.0),
        lambda lo, hi: 0.0 < lo < 1.0 < hi,
        "0 < eta_minus < 1 < eta_plus",
    )


def step_size_bounds(names: tuple[str, str], low: Any, high: Any) -> None:
    """Check ``0 <= low <= high < inf``."""
    _pair_check(
        names,
        (low, high),
        ("min", "max"),
        (lambda x: x >= 0.0, lambda x: x >= 0.0),
        lambda lo, hi: 0.0 <= lo <= hi,
        "0 <= min <= max" if names[0] == names[1] else f"0 <= {names[0]} <= {names[1]}",
    )


def one_of(name: str, value: Any, options: tuple[str, ...]) -> None:
    """Check that ``value`` is one of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        _fail(name, value, f"one of {', '.join(options)}")


_FLOATS = "float16, bfloat16, float32 or float64"


def float_dtype(name: str, value: Any, rule: str = f"None or {_FLOATS}") -> np.dtype | None:
    """``None``, or ``value`` (a dtype or its name) as a real floating ``np.dtype``:
    the ``accumulator_dtype`` of a block's per-parameter state."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating) or dtype.itemsize not in (2, 4, 8):
        _fail(name, value, rule)
    return dtype


# The rule each hyperparameter name has in gradtx's blocks and aliases, for values that
# enter without their constructor: set_hyperparams. A name not listed is checked for being
# a real scalar only (a user's own factory may give it any meaning).
_BY_NAME = {
    **dict.fromkeys(("learning_rate", "eps", "weight_decay", "momentum"), non_negative),
    **dict.fromkeys(("initial_scale", "min_step_size", "max_step_size", "max_delta"), non_negative),
    **dict.fromkeys(("max_norm", "threshold"), positive),
    "alpha": lambda name, v: in_range(name, v, 0.0, 1.0),
    "eta_minus": lambda name, v: _holds(name, v, lambda x: 0.0 < x < 1.0, "in (0, 1)"),
    "eta_plus": lambda name, v: _holds(name, v, lambda x: x > 1.0, "> 1"),
}


def hyperparameter(name: str, value: Any) -> None:
    """Check a concrete ``value`` given for hyperparameter ``name`` outside a constructor
    (:func:`gradtx.set_hyperparams`): by the rule gradtx's blocks apply to that name, or,
    for a name they do not use, that it is a real number. Keys and traced values pass."""
    if isinstance(value, jax.core.Tracer) or (
        hasattr(value, "dtype") and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)
    ):
        return
    rule = _BY_NAME.get(name)
    if rule is not None:
        rule(name, value)
        return
    try:
        concrete(value)
    except ValueError:
        _fail(name, value, "a real scalar")


def schedule_value(name: str, value: Any, rule: Rule, count: Any) -> None:
    """Check one value of the schedule given for ``name``, at step ``count``.

    Its shape is static, so a value that is not a scalar is refused always (a schedule
    giving ``[0.1, 0.2]`` would be broadcast over every leaf), traced or not. A concrete
    value (an eager step, or a schedule that ignores the count) is checked by ``rule``
    (:func:`non_negative`, :func:`finite`, ...) like the hyperparameter itself; a traced
    one is not read: no host sync inside a compiled step."""
    if isinstance(value, jax.core.Tracer) or hasattr(value, "dtype"):
        shape, dtype = tuple(jnp.shape(value)), jnp.result_type(value)
    else:
        shape, dtype = tuple(np.shape(value)), np.asarray(value).dtype
    at = "?" if isinstance(count, jax.core.Tracer) else repr(count)
    if isinstance(count, jax.Array | np.ndarray) and not isinstance(count, jax.core.Tracer):
        at = int(count)
    where = f"{name} (its schedule's value at step {at})"
    if shape != () or dtype == np.bool_ or not _is_real_dtype(dtype):
        got = f"a {dtype} array of shape {shape}" if shape != () else repr(value)
        raise ValueError(
            f"Invalid {where}: {got} (must be a real scalar: a schedule gives one number "
            "per step, never broadcast over the leaves)."
        )
    rule(where, value)


def schedule(name: str, fn: Any, rule: Rule) -> Callable[[Any], Any]:
    """``fn``, a schedule given for hyperparameter ``name``, with its values checked.

    The one place where schedules' values are checked (the blocks that take a schedule
    wrap it here; ``MultiSteps``'s and ``inject_hyperparams``'s can too). Its value at
    step 0 is checked now, where the schedule enters (a constructor); each later value by
    :func:`schedule_value` as it is computed: eagerly by ``rule``, under ``jit`` for its
    shape only. Raises ``ValueError`` naming ``name``, the step and the rule."""
    if not callable(fn):
        _fail(name, fn, "a schedule: a function of the step count")

    def checked(count: Any) -> Any:
        value = fn(count)
        schedule_value(name, value, rule, count)
        return value

    functools.update_wrapper(checked, fn, updated=())
    checked(jnp.zeros([], jnp.int32))
    return checked


def accumulator_dtype(name: str, value: Any) -> np.dtype | None:
    """``None``, or ``value`` as an accumulator's real floating dtype (every block's and
    wrapper's ``accumulator_dtype``): an integer sum truncates, a bool one saturates; for
    complex leaves see :func:`accumulator_for`."""
    return float_dtype(
        name,
        value,
        f"None or a real floating dtype: {_FLOATS} (complex leaves then keep complex64 or "
        "complex128 sums of that precision)",
    )


def accumulator_for(acc_dtype: np.dtype | None, leaf_dtype: Any) -> np.dtype:
    """The dtype of an accumulator kept for a leaf as it is (not as pairs of reals):
    the leaf's own without ``acc_dtype``; ``acc_dtype`` for a real leaf; for a complex
    leaf the complex dtype of ``acc_dtype``'s precision (complex64 for float16, bfloat16
    and float32, which have no narrower complex type), never its real part alone."""
    leaf_dtype = jnp.dtype(leaf_dtype)
    if acc_dtype is None:
        return leaf_dtype
    if jnp.issubdtype(leaf_dtype, jnp.complexfloating):
        return jnp.dtype(jnp.complex128 if acc_dtype.itemsize == 8 else jnp.complex64)
    return acc_dtype
