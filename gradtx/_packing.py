"""Rprop's step size and previous sign in one unsigned integer per weight.

Two encodings: thirds (below) for the variants without backtracking, and quarters
(:class:`Quarters`, further down) for the "+" variants, which need a fourth state.

A step size :math:`\\Delta \\ge 0` is a non-negative float; its bit pattern, read as an
unsigned integer of the same width, is below :math:`K` = ``0x5555...`` (a third of the
range) for every :math:`\\Delta` under :func:`packed_limit` (about 1.47e13 in float32,
bfloat16 and float64's wider range; 85.3 in float16). So

    code = bits(Δ) + K·c,  c = 0, 1, 2 for a previous sign 0, +1, -1

stores both exactly: bits(Δ) = code mod K, and K·c is the rest (:func:`unpack_offsets`).
The integer dtype names the float dtype of the step sizes (the table below), so a
packed state can be read back without knowing the params.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._numerics import UNSIGNED, signs

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


def _k(width: int) -> int:
    """K = 0x5555... of ``width`` bytes: a third of the unsigned range, rounded down."""
    return int("55" * width, 16)


def is_packable(step_dtype: Any) -> bool:
    return jnp.dtype(step_dtype) in _PACKED


def step_dtype(code: jax.Array) -> Any:
    """The float dtype of the step sizes that codes of ``code``'s dtype hold."""
    return _STEP[jnp.dtype(code.dtype)]


def packed_limit(step_dtype: Any) -> float:
    """The largest step size of ``step_dtype`` that packs: bits(Δ) = K - 1."""
    width = jnp.dtype(step_dtype).itemsize
    bits = np.asarray(_k(width) - 1, UNSIGNED[width])
    return float(bits.view(jnp.dtype(step_dtype)))


def fits(value: float, step_dtype: Any) -> bool:
    """Whether ``value``, rounded to ``step_dtype`` as the step-size clip rounds it, packs."""
    return float(np.asarray(value, jnp.dtype(step_dtype))) <= packed_limit(step_dtype)


class Offsets(NamedTuple):
    """K·c for c = 0, 1, 2, broadcast to one leaf's shape in its unsigned type. Made once
    per leaf and shared by :func:`unpack`, :func:`encode` and :func:`signed_step`: every
    constant the compiler sees is one more instruction per leaf, and XLA's compile time
    grows with the instruction count."""

    zero: jax.Array
    one: jax.Array
    two: jax.Array

    @classmethod
    def like(cls, x: jax.Array) -> Offsets:
        """The offsets for codes (or step sizes) shaped like ``x``."""
        unsigned = UNSIGNED[jnp.dtype(x.dtype).itemsize]
        k = _k(jnp.dtype(x.dtype).itemsize)
        return cls(*(jnp.full(x.shape, c * k, unsigned) for c in (0, 1, 2)))


class ThirdsSigns(NamedTuple):
    """Signs as the codes' offsets K·c: 0, K, 2K for 0, +1, -1 (c of the module docstring).

    The thirds' rules read and write signs in this form (see :func:`unpack_offsets`):
    agreement is two integer comparisons and the new code one addition, fewer
    instructions than masks, and XLA's compile time grows with the instruction count."""

    off: jax.Array
    k: Offsets

    def of(self, x: jax.Array) -> ThirdsSigns:
        """The signs of ``x`` as offsets (read from its bits, :func:`gradtx._numerics.signs`)."""
        s, k = signs(x), self.k
        return ThirdsSigns(jnp.where(s.pos, k.one, jnp.where(s.neg, k.two, k.zero)), k)

    def agreement(self, prev: ThirdsSigns) -> tuple[jax.Array, jax.Array]:
        """(x·x' > 0, x·x' < 0): equal non-zero offsets, and K + 2K, the only pair of
        offsets that sums to 3K (2K + 2K wraps around to 4K - 2^w)."""
        same = (self.off == prev.off) & (self.off != self.k.zero)
        return same, self.off + prev.off == self.k.one + self.k.two

    def unless(self, mask: jax.Array) -> ThirdsSigns:
        """These signs, 0 where ``mask``."""
        return ThirdsSigns(jnp.where(mask, self.k.zero, self.off), self.k)

    @classmethod
    def of_int8(cls, sign: jax.Array, k: Offsets) -> ThirdsSigns:
        """Signs given as ``int8`` (-1, 0, +1), as offsets."""
        return cls(jnp.where(sign > 0, k.one, jnp.where(sign < 0, k.two, k.zero)), k)

    def as_int8(self) -> jax.Array:
        """-1, 0 or +1 as ``int8``."""
        neg = jnp.where(self.off == self.k.two, jnp.int8(-1), jnp.int8(0))
        return jnp.where(self.off == self.k.one, jnp.int8(1), neg)


def unpack_offsets(code: jax.Array, k: Offsets) -> tuple[jax.Array, ThirdsSigns]:
    """The step sizes and the signs as offsets: bits(Δ) = code mod K, offset = code - bits(Δ)."""
    bits = _bits(code)
    step_bits = bits % k.one
    step = jax.lax.bitcast_convert_type(step_bits, step_dtype(code))
    return step, ThirdsSigns(bits - step_bits, k)


def encode_offsets(step: jax.Array, s: ThirdsSigns) -> jax.Array:
    """Pack step sizes with signs given as offsets."""
    code = _bits(step) + s.off
    packed = _PACKED[jnp.dtype(step.dtype)]
    return code if code.dtype == packed else jax.lax.bitcast_convert_type(code, packed)


def _bits(x: jax.Array) -> jax.Array:
    unsigned = UNSIGNED[jnp.dtype(x.dtype).itemsize]
    return x if x.dtype == unsigned else jax.lax.bitcast_convert_type(x, unsigned)


def signed_step(code: jax.Array, k: Offsets | None = None) -> jax.Array:
    r"""sign(g')·Δ straight from the code: Δ, -Δ or 0.

    For c = 2, subtracting 2K - 2^(w-1) (wrapping) leaves bits(Δ) with the sign bit set,
    which is -Δ; for c = 1, subtracting K leaves Δ; c = 0 gives 0."""
    k = k or Offsets.like(code)
    bits = _bits(code)
    width = jnp.dtype(code.dtype).itemsize
    minus = bits.dtype.type(2 * _k(width) - (1 << (8 * width - 1)))  # 2K - 2^(w-1)
    signed = bits - jnp.where(bits >= k.two, minus, k.one)
    dtype = step_dtype(code)
    zero = jax.lax.bitcast_convert_type(k.zero, dtype)  # +0.0: all bits clear
    return jnp.where(bits >= k.one, jax.lax.bitcast_convert_type(signed, dtype), zero)


def decode(code: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The step sizes and the previous signs as ``int8`` (-1, 0, +1)."""
    step, s = unpack_offsets(code, Offsets.like(code))
    return step, s.as_int8()


def encode_int8(step: jax.Array, sign: jax.Array) -> jax.Array:
    """Pack step sizes (>= 0) with the previous signs given as ``int8`` (-1, 0, +1)."""
    return encode_offsets(step, ThirdsSigns.of_int8(sign, Offsets.like(step)))


# --------------------------------------------------------------------------------------
# Quarters: the "+" variants' codes, with a fourth state
# --------------------------------------------------------------------------------------


class Quarters(NamedTuple):
    r"""Codes with four states, for the "+" variants' deferred decrease.

    The "+" variants keep, where the sign flipped, the step size :math:`\Delta_{t-1}`
    (their undo moves by it) and mark it *pending*: its decrease is applied at the next
    step. With :math:`Q = 2^{w-2}` (a quarter of the ``w``-bit range) and ``base`` the
    bits of ``min_step_size`` in the step-size dtype, below which no step size falls,

        code = bits(Δ) - base + Q·c,  c = 0, 1, 2, 3 for a sign 0, +1, -1, pending

    stores both exactly wherever bits(max_step_size) - base < Q (:meth:`fits`): about
    2^7 binades between the bounds in float32 and bfloat16 (1e-6 to 50 takes 26), 2^10
    in float64, and only 2^4 in float16. The codes share the thirds' integer dtypes.
    """

    base: int  # bits(min_step_size) in the step-size dtype
    width: int  # bytes

    @classmethod
    def of(cls, min_step_size: float, step_dtype: Any) -> Quarters:
        dtype = jnp.dtype(step_dtype)
        bits = np.asarray(min_step_size, dtype).view(UNSIGNED[dtype.itemsize])
        return cls(int(bits), dtype.itemsize)

    @classmethod
    def fits(cls, min_step_size: float, max_step_size: float, step_dtype: Any) -> bool:
        """Whether every step size in the bounds, rounded to ``step_dtype``, packs."""
        return cls.of(min_step_size, step_dtype).holds(np.asarray(max_step_size, step_dtype))

    @property
    def quarter(self) -> int:
        """Q, a quarter of the unsigned range."""
        return 1 << (8 * self.width - 2)

    def holds(self, step: Any) -> bool:
        """Whether concrete step sizes (NumPy) all lie in [min_step_size, base + Q)."""
        bits = np.asarray(step).view(UNSIGNED[self.width]).astype(np.uint64)
        base = np.uint64(int(np.asarray(self.base)))
        return bool(np.all(bits >= base) and np.all(bits - base < np.uint64(self.quarter)))

    def _q(self, shape, c):
        return jnp.full(shape, c * self.quarter, UNSIGNED[self.width])

    def encode(self, step, pos, neg, pending):
        """Pack step sizes (>= ``min_step_size``) with the sign masks and the pending mask."""
        q = functools.partial(self._q, step.shape)
        offset = jnp.where(pos, q(1), jnp.where(neg, q(2), jnp.where(pending, q(3), q(0))))
        code = _bits(step) - self.base + offset
        packed = _PACKED[jnp.dtype(step.dtype)]
        return code if code.dtype == packed else jax.lax.bitcast_convert_type(code, packed)

    def unpack(self, code):
        """The step sizes and the masks ``pos``, ``neg``, ``pending``."""
        bits, q = _bits(code), functools.partial(self._q, code.shape)
        pos, neg, pending = bits - q(1) < q(1), bits - q(2) < q(1), bits >= q(3)
        step = (bits & (q(1) - 1)) + self.base
        return jax.lax.bitcast_convert_type(step, step_dtype(code)), pos, neg, pending

    def signed_step(self, code):
        r"""sign(g')·Δ straight from the code for c = 0, 1, 2 (for c = 3, -Δ).

        Clearing the bit Q leaves, plus ``base``, bits(Δ) for c = 1 and bits(Δ) with the
        sign bit (2Q) set, -Δ, for c = 2."""
        bits, q = _bits(code), functools.partial(self._q, code.shape)
        signed = jax.lax.bitcast_convert_type((bits & ~q(1)) + self.base, step_dtype(code))
        return jnp.where(bits >= q(1), signed, jnp.zeros((), signed.dtype))
