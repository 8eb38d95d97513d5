"""How one leaf's (Δ, sign g') is stored: the :class:`Storage` interface (the rules' only way
to signs) and three stores, :class:`Packed`, :class:`Deferred`, :class:`Plain`, all reading
signs from the bits (:func:`gradtx._numerics.signs`: flushed subnormals keep theirs)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._numerics import UNSIGNED, nonzero, signs

S = TypeVar("S")  # a store's form of an array of signs


class Storage(Protocol[S]):
    """A leaf's store (``S``: its signs' form; ``*state``: its arrays in field order)."""

    def read(self, *state: jax.Array) -> tuple[jax.Array, S]:
        """(Δ, sign g') from the state arrays."""

    def write(self, step: jax.Array, prev: S) -> tuple[jax.Array, ...]:
        """The state arrays holding (Δ, sign g')."""

    def commit(self, before, step, prev: S, backtrack, g, worse) -> tuple[jax.Array, tuple]:
        """The update and new state arrays from a rule's (Δ, sign g', ``(where, by)`` or
        ``None``); ``before``: the Δ it read; ``worse``: the "+" variants' condition."""

    def sign(self, x: jax.Array) -> S:
        """sign(x) in this store's form."""

    def agreement(self, s: S, prev: S) -> tuple[jax.Array, jax.Array]:
        """(x·x' > 0, x·x' < 0) for the signs of x and x'."""

    def unless(self, s: S, mask: jax.Array) -> S:
        """The signs ``s``, 0 where ``mask``."""

    def times(self, s: S, x: jax.Array) -> jax.Array:
        """sign·x: x, -x or 0 (the product, bit for bit)."""

    def as_int8(self, s: S) -> jax.Array:
        """The signs as ``int8`` (-1, 0, +1)."""

    def of_int8(self, sign: jax.Array) -> S:
        """Signs given as ``int8``, in this store's form."""


class _Eager:
    def commit(self, before, step, prev, backtrack, g, worse):
        """The move sign(g')·Δ read back from the new state, or the backtracking step."""
        new = self.write(step, prev)
        u = self.move(*new)
        return (u if backtrack is None else jnp.where(*backtrack, u)), new


class Plain(_Eager):
    """Δ and sign g' (``int8``) side by side: ``max_step_size`` an array or beyond packing."""

    like = classmethod(lambda cls, step, held=None: cls())

    def read(self, step, sign):
        return step, sign

    write = read  # (Δ, sign g') are the state arrays

    def move(self, step, sign):
        return self.times(sign, step)

    def sign(self, x):
        pos, neg = signs(x)
        return jnp.where(pos, jnp.int8(1), jnp.where(neg, jnp.int8(-1), jnp.int8(0)))

    def agreement(self, s, prev):
        nz = s != 0
        return nz & (s == prev), nz & (s == -prev)

    def unless(self, s, mask):
        return jnp.where(mask, jnp.int8(0), s)

    def times(self, s, x):
        return jnp.where(s > 0, x, jnp.where(s < 0, -x, jnp.zeros((), x.dtype)))

    def as_int8(self, s):
        return s

    def of_int8(self, sign):
        return jnp.asarray(sign, jnp.int8)


# step-size dtype -> codes' dtype; bfloat16's int16 (same bits) tells them from float16's
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


def _bits(x: jax.Array) -> jax.Array:
    unsigned = UNSIGNED[jnp.dtype(x.dtype).itemsize]
    return x if x.dtype == unsigned else jax.lax.bitcast_convert_type(x, unsigned)


def is_packable(step_dtype: Any) -> bool:
    return jnp.dtype(step_dtype) in _PACKED


def step_dtype(code: jax.Array) -> Any:
    """The float dtype of the step sizes that codes of ``code``'s dtype hold."""
    return _STEP[jnp.dtype(code.dtype)]


def packed_limit(step_dtype: Any) -> float:
    """The largest step size of ``step_dtype`` that packs: bits(Δ) = K - 1."""
    width = jnp.dtype(step_dtype).itemsize
    return float(np.asarray(_k(width) - 1, UNSIGNED[width]).view(jnp.dtype(step_dtype)))


def fits(value: float, step_dtype: Any) -> bool:
    """Whether ``value``, rounded to ``step_dtype`` as the step-size clip rounds it, packs."""
    return float(np.asarray(value, jnp.dtype(step_dtype))) <= packed_limit(step_dtype)


class Offset(NamedTuple):
    """Signs as code offsets K·c (0, K, 2K for 0, +1, -1), and where they are non-zero if
    known (XLA would not see that it equals ``off != 0``)."""

    off: jax.Array
    nonzero: jax.Array | None = None


class Packed(_Eager):
    """The default: codes ``bits(Δ) + K·c`` (K: :func:`_k`), c = 0, 1, 2 for a previous sign
    0, +1, -1: Δ in [0, :func:`packed_limit`] has bits below K, so a code holds both. K·c is
    made once per leaf, at its shape (XLA's compile time grows with the constants it sees)."""

    def __init__(self, x: jax.Array, held: Any = None):
        width = jnp.dtype(x.dtype).itemsize
        k = [jnp.full(x.shape, c * _k(width), UNSIGNED[width]) for c in (0, 1, 2)]
        self.zero, self.one, self.two = k
        self.held = held

    like = classmethod(lambda cls, x, held=None: cls(x, held))

    def read(self, code):
        """bits(Δ) = code mod K; the offset is the rest."""
        bits = _bits(code)
        step_bits = bits % self.one
        return jax.lax.bitcast_convert_type(step_bits, step_dtype(code)), Offset(bits - step_bits)

    def write(self, step, prev):
        code = _bits(step) + prev.off
        packed = _PACKED[jnp.dtype(step.dtype)]
        return (code if code.dtype == packed else jax.lax.bitcast_convert_type(code, packed),)

    def move(self, code):
        """c = 2: minus 2K - 2^(w-1) (wrapping) sets Δ's sign bit; c = 1: minus K leaves Δ;
        c = 0: the code is below both, minus itself is +0.0 (one ``minimum``, no select)."""
        bits, width = _bits(code), jnp.dtype(code.dtype).itemsize
        minus = bits.dtype.type(2 * _k(width) - (1 << (8 * width - 1)))  # 2K - 2^(w-1) < K
        signed = bits - jnp.minimum(bits, jnp.where(bits >= self.two, minus, self.one))
        return jax.lax.bitcast_convert_type(signed, step_dtype(code))

    def sign(self, x):
        """K shifted left by x's sign bit (2K = K << 1) where x is non-zero."""
        bits, nz = _bits(x), nonzero(x)
        negative = (bits >> bits.dtype.type(8 * bits.dtype.itemsize - 1)).astype(self.one.dtype)
        return Offset(jnp.where(nz, self.one << negative, self.zero), nz)

    def agreement(self, s, prev):
        """Equal non-zero offsets agree; only K + 2K sums to 3K (2K + 2K wraps)."""
        nz = s.off != self.zero if s.nonzero is None else s.nonzero
        return (s.off == prev.off) & nz, s.off + prev.off == self.one + self.two

    def unless(self, s, mask):
        return Offset(jnp.where(mask, self.zero, s.off))

    def times(self, s, x):
        zero = jnp.zeros((), x.dtype)
        return jnp.where(s.off == self.one, x, jnp.where(s.off == self.two, -x, zero))

    def as_int8(self, s):
        neg = jnp.where(s.off == self.two, jnp.int8(-1), jnp.int8(0))
        return jnp.where(s.off == self.one, jnp.int8(1), neg)

    def of_int8(self, sign):
        sign = jnp.asarray(sign)
        return Offset(jnp.where(sign > 0, self.one, jnp.where(sign < 0, self.two, self.zero)))


class Deferred(Packed):
    """:class:`Packed` codes and a ``uint8`` *pending* mark where the sign flipped; the code
    there keeps Δ_{t-1}, the undo's step (an update reads only the new state and g: no old
    copy in a donated step); :meth:`read` decreases it with the marking step's ``held``."""

    def read(self, code, pending):
        step, prev = super().read(code)
        eta, low, high = (jnp.asarray(v).astype(step.dtype) for v in self.held)
        return jnp.where(pending != 0, jnp.clip(step * eta, low, high), step), prev

    def write(self, step, prev):
        return (*super().write(step, prev), jnp.zeros(step.shape, jnp.uint8))

    def commit(self, before, step, prev, backtrack, g, worse):
        """Move by sign(g')·Δ, and where flipped (g != 0, new sign 0) by the undo
        -u_{t-1} = sign(g)·Δ_{t-1} if ``worse``, reading only the new code and g."""
        (code,) = super().write(jnp.where(backtrack[0], before, step), prev)
        flipped = (_bits(code) < self.one) & nonzero(g)  # sign 0: the code is bits(Δ)
        kept = jax.lax.bitcast_convert_type(_bits(code), step_dtype(code))
        undo = jnp.where(worse, self.times(self.sign(g), kept), jnp.zeros((), kept.dtype))
        return jnp.where(flipped, undo, self.move(code)), (code, flipped.astype(jnp.uint8))
