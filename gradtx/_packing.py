"""Rprop's step size and previous sign in one unsigned integer per weight.

A step size :math:`\\Delta \\ge 0` is a non-negative float; its bit pattern, read as an
unsigned integer of the same width, is below :math:`K` = ``0x5555...`` (a third of the
range) for every :math:`\\Delta` under :func:`packed_limit` (about 1.47e13 in float32,
bfloat16 and float64's wider range; 85.3 in float16). So

    code = bits(Δ) + K·c,  c = 0, 1, 2 for a previous sign 0, +1, -1

stores both exactly, and two comparisons decode it: ``c = (code >= K) + (code >= 2K)``.
The integer dtype names the float dtype of the step sizes (the table below), so a
packed state can be read back without knowing the params.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# step-size dtype -> the integer dtype holding its packed form. float16 and bfloat16
# have the same width: bfloat16's codes are stored as int16 (the same bits) so that the
# integer dtype alone tells them apart.
_PACKED = {
    jnp.dtype(jnp.float32): jnp.dtype(jnp.uint32),
    jnp.dtype(jnp.float64): jnp.dtype(jnp.uint64),
    jnp.dtype(jnp.float16): jnp.dtype(jnp.uint16),
    jnp.dtype(jnp.bfloat16): jnp.dtype(jnp.int16),
}
_STEP = {packed: step for step, packed in _PACKED.items()}
_UNSIGNED = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}


def _k(width: int) -> int:
    """K = 0x5555... of ``width`` bytes: a third of the unsigned range, rounded down."""
    return int("55" * width, 16)


def is_packable(step_dtype: Any) -> bool:
    return jnp.dtype(step_dtype) in _PACKED


def is_packed(x: Any) -> bool:
    """Whether a state leaf holds packed codes (an integer dtype from the table)."""
    return jnp.dtype(x.dtype) in _STEP


def packed_limit(step_dtype: Any) -> float:
    """The largest step size of ``step_dtype`` that packs: bits(Δ) = K - 1."""
    width = jnp.dtype(step_dtype).itemsize
    bits = np.asarray(_k(width) - 1, _UNSIGNED[width])
    return float(bits.view(jnp.dtype(step_dtype)))


def fits(value: float, step_dtype: Any) -> bool:
    """Whether ``value``, rounded to ``step_dtype`` as the step-size clip rounds it, packs."""
    return float(np.asarray(value, jnp.dtype(step_dtype))) <= packed_limit(step_dtype)


def encode(step: jax.Array, sign: jax.Array) -> jax.Array:
    """Pack step sizes (>= 0) and signs (int8 in {-1, 0, 1}) into codes."""
    step_dtype = jnp.dtype(step.dtype)
    width = step_dtype.itemsize
    unsigned = _UNSIGNED[width]
    k = _k(width)
    bits = jax.lax.bitcast_convert_type(step, unsigned)
    offset = jnp.where(sign > 0, unsigned(k), jnp.where(sign < 0, unsigned(2 * k), unsigned(0)))
    return jax.lax.bitcast_convert_type(bits + offset, _PACKED[step_dtype])


def decode(code: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The step sizes (in the float dtype the code's dtype names) and int8 signs."""
    step_dtype = _STEP[jnp.dtype(code.dtype)]
    width = step_dtype.itemsize
    unsigned = _UNSIGNED[width]
    k = _k(width)
    code = jax.lax.bitcast_convert_type(code, unsigned)
    plus, minus = code >= unsigned(k), code >= unsigned(2 * k)  # c >= 1, c == 2
    offset = jnp.where(minus, unsigned(2 * k), jnp.where(plus, unsigned(k), unsigned(0)))
    step = jax.lax.bitcast_convert_type(code - offset, step_dtype)
    sign = jnp.where(minus, -1, jnp.where(plus, 1, 0)).astype(jnp.int8)
    return step, sign
