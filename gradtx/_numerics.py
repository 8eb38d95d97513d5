"""Numerics helpers shared by the per-leaf rules: signs read from the bits, and complex
numbers as pairs of reals (``torch.optim``'s ``view_as_real`` convention)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

_SAME_WIDTH_INT = {1: jnp.int8, 2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def sign(x: jax.Array) -> jax.Array:
    """The sign of ``x`` as ``int8``: -1, 0 or +1, with ``sign(NaN) = 0`` as in ``torch.sign``.

    Read from the bit pattern, so that a subnormal number has the sign torch gives it:
    XLA on CPU runs with denormals-are-zero, where ``x > 0`` is false for ``x = 1e-45``.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize not in _SAME_WIDTH_INT:
        return (x > 0).astype(jnp.int8) - (x < 0).astype(jnp.int8)
    int_type = _SAME_WIDTH_INT[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, int_type)
    magnitude = bits & jnp.iinfo(int_type).max  # the bits without the sign bit
    inf = jax.lax.bitcast_convert_type(jnp.array(jnp.inf, x.dtype), int_type)
    is_number = (magnitude != 0) & (magnitude <= inf)  # not ±0, not NaN
    return jnp.where(is_number, jnp.where(bits < 0, -1, 1), 0).astype(jnp.int8)


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
