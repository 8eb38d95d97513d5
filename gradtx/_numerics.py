"""Numerics helpers shared by the per-leaf rules: signs read from the bits, and complex
numbers as pairs of reals (``torch.optim``'s ``view_as_real`` convention)."""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}
"""The unsigned integer type of each width in bytes: a float's bits read as a number."""


def widened(x: jax.Array, dtype: Any) -> jax.Array:
    """``x`` in ``dtype`` if that is wider, rounded to its own dtype first. The value a
    block before handed on is rounded (eagerly it is stored); under ``jit`` XLA may keep a
    fused bfloat16 or float16 expression in float32 (excess precision), so the barrier
    makes the jitted step round where the eager one does."""
    wide = jnp.promote_types(x.dtype, dtype)
    return x if wide == x.dtype else jax.lax.optimization_barrier(x).astype(wide)


class Signs(NamedTuple):
    """The sign of each element as two masks: ``pos`` where it is > 0, ``neg`` where < 0
    (neither where it is 0 or NaN: ``sign(NaN) = 0``, as ``torch.sign`` gives)."""

    pos: jax.Array
    neg: jax.Array


def signs(x: jax.Array) -> Signs:
    """The signs of a float array, read from its bit pattern.

    Read from the bits so that a subnormal number has the sign torch gives it: XLA on CPU
    runs with denormals-are-zero, where ``x > 0`` is false for ``x = 1e-45``. With ``b``
    the bits as an unsigned integer and ``I`` those of +inf, ``x > 0`` is ``0 < b <= I``,
    one unsigned comparison ``b - 1 < I`` (``b = 0`` wraps around); ``x < 0`` is the same
    with the sign bit set.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize not in UNSIGNED:
        return Signs(x > 0, x < 0)
    unsigned = UNSIGNED[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned)
    inf = unsigned(np.asarray(np.inf, x.dtype).view(unsigned))
    sign_bit = unsigned(1 << (8 * x.dtype.itemsize - 1))
    return Signs(bits - unsigned(1) < inf, bits - (sign_bit + unsigned(1)) < inf)


def nonzero(x: jax.Array) -> jax.Array:
    """Where a float array is neither ±0 nor NaN (``sign(x) != 0``, as :func:`signs`),
    read from its bits: with the sign shifted out, ``b - 1 < I`` as there, in one
    comparison for both signs."""
    x = jnp.asarray(x)
    unsigned = UNSIGNED[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned)
    inf = unsigned(np.asarray(np.inf, x.dtype).view(unsigned))
    one = unsigned(1)
    return (bits + bits) - one < inf + inf  # bits << 1 without a shift count to hold


def as_real(x: jax.Array) -> jax.Array:
    """A complex array as a real one with a trailing axis of 2 (re, im); reals unchanged."""
    if jnp.iscomplexobj(x):
        return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    return x


def as_complex(x: jax.Array, dtype: Any) -> jax.Array:
    """The inverse of :func:`as_real` for a complex ``dtype``."""
    return jax.lax.complex(x[..., 0], x[..., 1]).astype(dtype)


def real_shape(x: Any) -> tuple[int, ...]:
    """The shape of ``as_real(x)``, without computing it."""
    return (*x.shape, 2) if jnp.iscomplexobj(x) else tuple(x.shape)


def one_minus_power(decay, t):
    """:math:`1 - \\beta^t` as :math:`-\\operatorname{expm1}(t \\log(1 - (1 - \\beta)))`.

    One number eagerly and under ``jit``: ``1 - decay ** t`` is not (with ``decay`` a
    Python float, XLA rewrites ``pow`` of a constant inside a compiled step, and the two
    differ by an ulp of :math:`\\beta^t`, 2e-5 relative at :math:`\\beta` = 0.999), while
    a product and ``expm1`` compile alike in both. It is also accurate to a few ulp where
    ``1 - decay ** t`` cancels (optax's form, off by up to 2e-5 relative at 0.999; the
    logarithm of a Python float is taken in float64)."""
    log_decay = math.log1p(decay - 1.0) if isinstance(decay, numbers.Real) else jnp.log1p(decay - 1)
    return -jnp.expm1(jnp.asarray(t, jnp.result_type(float)) * log_decay)
