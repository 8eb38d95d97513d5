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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._numerics import UNSIGNED, nonzero

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
    # off != 0, where already known (from ``of``): XLA cannot see that the comparison
    # equals the mask the offsets were selected by, and would compute it again
    nonzero: jax.Array | None = None

    def of(self, x: jax.Array) -> ThirdsSigns:
        """The signs of ``x`` as offsets, read from its bits as :func:`gradtx._numerics.signs`
        reads them: K shifted left by x's sign bit (2K = K << 1) where x is non-zero."""
        bits, k, nz = _bits(x), self.k, nonzero(x)
        negative = (bits >> bits.dtype.type(8 * bits.dtype.itemsize - 1)).astype(k.one.dtype)
        return ThirdsSigns(jnp.where(nz, k.one << negative, k.zero), k, nz)

    def agreement(self, prev: ThirdsSigns) -> tuple[jax.Array, jax.Array]:
        """(x·x' > 0, x·x' < 0): equal non-zero offsets, and K + 2K, the only pair of
        offsets that sums to 3K (2K + 2K wraps around to 4K - 2^w)."""
        nz = self.off != self.k.zero if self.nonzero is None else self.nonzero
        return (self.off == prev.off) & nz, self.off + prev.off == self.k.one + self.k.two

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


def _sign_bit(x: jax.Array, width: int) -> jax.Array:
    """The sign bit of the floats ``x``, as the highest bit of ``width``-byte unsigned ints
    (x's own bits masked where the widths agree, the gradients' usual case)."""
    bits, unsigned = _bits(x), UNSIGNED[width]
    top = bits.dtype.type(1 << (8 * bits.dtype.itemsize - 1))
    if bits.dtype == unsigned:
        return bits & top
    return (bits >= top).astype(unsigned) << unsigned(8 * width - 1)


def _bits(x: jax.Array) -> jax.Array:
    unsigned = UNSIGNED[jnp.dtype(x.dtype).itemsize]
    return x if x.dtype == unsigned else jax.lax.bitcast_convert_type(x, unsigned)


def signed_step(code: jax.Array, k: Offsets | None = None) -> jax.Array:
    r"""sign(g')·Δ straight from the code: Δ, -Δ or 0.

    For c = 2, subtracting 2K - 2^(w-1) (wrapping) leaves bits(Δ) with the sign bit set,
    which is -Δ; for c = 1, subtracting K leaves Δ; for c = 0 the code is below both, and
    subtracting the code itself leaves +0.0: the offset is min(code, that subtrahend), one
    instruction where a comparison and a select of 0 would take four."""
    k = k or Offsets.like(code)
    bits = _bits(code)
    width = jnp.dtype(code.dtype).itemsize
    minus = bits.dtype.type(2 * _k(width) - (1 << (8 * width - 1)))  # 2K - 2^(w-1) < K
    signed = bits - jnp.minimum(bits, jnp.where(bits >= k.two, minus, k.one))
    return jax.lax.bitcast_convert_type(signed, step_dtype(code))


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
    step. With :math:`Q = 2^{w-2}` (a quarter of the ``w``-bit range),

        code = bits(Δ·2^-k) + Q·c,  c = 0, 1, 3, 2 for a sign 0, +1, -1, pending

    where :math:`2^{-k}` moves ``min_step_size`` into the lowest binade of normal floats
    (:meth:`of`). A product by a power of two is exact while it stays normal, and
    rounding commutes with it, so the rule runs on the scaled step sizes as they are:
    :math:`\operatorname{clip}(\Delta 2^{-k}\eta, \Delta_{\min}2^{-k},
    \Delta_{\max}2^{-k}) = \operatorname{clip}(\Delta\eta, \Delta_{\min},
    \Delta_{\max})\,2^{-k}` bit for bit (a product that falls below the lowest
    binade is clipped up to its bottom either way), and only the move multiplies by
    :math:`2^k`. Every scaled step size lies in [Δmin·2^-k, 2) wherever Δmax·2^-k < 2
    (:meth:`fits`), and the bits of a float in [0, 2) are below Q: about 2^7 binades
    between the bounds in float32 and bfloat16 (1e-6 to 50 takes 26), 2^10 in float64,
    and only 2^4 in float16. Where ``min_step_size`` is 0 (or subnormal) k = 0 and the
    step sizes are stored as they are, below 2. The codes share the thirds' integer
    dtypes.

    The top two bits are the state (:class:`QuarterSigns`): the highest, 2Q, is a
    float's sign bit, set for -1 (and for pending), and Q is set for a non-zero sign. So
    a gradient's signs in this form are Q with its own sign bit, agreement is an
    exclusive or, and the move copies the gradient's sign bit onto Δ·2^-k.
    """

    k: Any  # the scale exponent: an int, or a traced integer scalar (the accessors)
    width: int  # bytes

    @classmethod
    def of(cls, min_step_size: Any, step_dtype: Any) -> Quarters:
        """k = e - e_min for ``min_step_size`` = m·2^e rounded to ``step_dtype`` (normal;
        e_min the dtype's lowest normal exponent), at most -e_min so that 2^k and 2^-k
        are normal floats; 0 where ``min_step_size`` is 0 or subnormal. A traced
        ``min_step_size`` (the accessors under ``jit``) gives a traced k."""
        dtype = jnp.dtype(step_dtype)
        info = jnp.finfo(dtype)
        lowest, emin = float(info.smallest_normal), int(info.minexp)
        traced = isinstance(min_step_size, jax.core.Tracer)
        xp = jnp if traced else np
        low = xp.asarray(min_step_size).astype(dtype)
        exponent = xp.frexp(low.astype(np.float32) if dtype.itemsize < 4 else low)[1] - 1
        k = xp.where(low >= lowest, xp.minimum(exponent - emin, -emin), 0)
        return cls(k if traced else int(k), dtype.itemsize)

    @classmethod
    def fits(cls, min_step_size: float, max_step_size: float, step_dtype: Any) -> bool:
        """Whether every step size in the bounds, rounded to ``step_dtype``, packs."""
        q = cls.of(min_step_size, step_dtype)
        return q.holds(np.asarray([min_step_size, max_step_size], step_dtype))

    @property
    def quarter(self) -> int:
        """Q, a quarter of the unsigned range."""
        return 1 << (8 * self.width - 2)

    def holds(self, step: Any) -> bool:
        """Whether concrete step sizes (NumPy) all lie in :meth:`bounds` (NaN does not)."""
        step = np.asarray(step)
        lowest, highest = self.bounds(step.dtype)
        wide = step.astype(np.float64)
        return bool(np.all((wide >= lowest) & (wide < highest)))

    def bounds(self, step_dtype: Any) -> tuple[float, float]:
        """[lowest, highest): the step sizes that scale exactly into [0, 2) (concrete k):
        where k > 0, those that stay normal once scaled, from 2^(k + e_min)."""
        emin = int(jnp.finfo(step_dtype).minexp)
        return (2.0 ** (self.k + emin) if self.k else 0.0), 2.0 ** (self.k + 1)

    def _q(self, c):
        return UNSIGNED[self.width](c * self.quarter)

    def _power(self, sign: int, dtype: Any) -> Any:
        """2^(sign·k) in ``dtype``, a normal float (k <= -e_min)."""
        if isinstance(self.k, jax.core.Tracer):  # float16's and bfloat16's 2^k in float32
            wide = dtype if jnp.dtype(dtype).itemsize >= 4 else jnp.float32
            return jnp.ldexp(jnp.ones((), wide), sign * self.k).astype(dtype)
        return np.asarray(2.0 ** (sign * self.k), dtype)

    def scaled_bounds(self, low: float, high: float, dtype: Any) -> tuple:
        """The bounds rounded to ``dtype`` and scaled by 2^-k, exactly (they fit)."""
        return tuple(np.asarray(x, dtype) * self._power(-1, dtype) for x in (low, high))

    def _unscale(self, scaled: jax.Array) -> jax.Array:
        """Δ = Δ·2^-k · 2^k (exact)."""
        if isinstance(self.k, int) and self.k == 0:
            return scaled
        return scaled * self._power(1, scaled.dtype)

    def encode(self, scaled: jax.Array, top: jax.Array) -> jax.Array:
        """Pack scaled step sizes Δ·2^-k (in [0, 2)) with the state's top bits, Q·c."""
        code = _bits(scaled) + top
        packed = _PACKED[jnp.dtype(scaled.dtype)]
        return code if code.dtype == packed else jax.lax.bitcast_convert_type(code, packed)

    def encode_masks(self, step, pos, neg, pending) -> jax.Array:
        """Pack step sizes Δ (unscaled) with the signs and the pending mark given as masks."""
        q = self._q
        top = jnp.where(pos, q(1), jnp.where(neg, q(3), jnp.where(pending, q(2), q(0))))
        return self.encode(step * self._power(-1, step.dtype), top)

    def _magnitude(self, bits: jax.Array) -> jax.Array:
        """The bits of Δ·2^-k: the code without its top two bits."""
        return bits & (self._q(1) - 1)

    def scaled_step(self, code: jax.Array) -> jax.Array:
        """The scaled step sizes Δ·2^-k, which the rule runs on."""
        return jax.lax.bitcast_convert_type(self._magnitude(_bits(code)), step_dtype(code))

    def step(self, code: jax.Array) -> jax.Array:
        """The step sizes Δ."""
        return self._unscale(self.scaled_step(code))

    def signs(self, code: jax.Array) -> QuarterSigns:
        """The signs g' (pending included, as Q·2) in the codes' top bits."""
        return QuarterSigns(_bits(code) & self._q(3), self)

    def unpack(self, code):
        """The step sizes and the masks ``pos``, ``neg``, ``pending``."""
        s, q = self.signs(code), self._q
        return self.step(code), s.top == q(1), s.top == q(3), s.pending()

    def move(self, code: jax.Array, g: jax.Array, worse: Any = True) -> jax.Array:
        r"""The "+" variants' update from their new code and the gradient: copysign(Δ, g)
        where g' != 0 (then sign g' = sign g) and, if ``worse``, where pending (the undo
        -u_{t-1} = sign(g)·Δ_{t-1}); 0 elsewhere. The sign bit is copied onto Δ·2^-k,
        which is then multiplied by 2^k: the result is the product sign(g)·Δ bit for bit.

        The moving states are the top bits 01 and 11, the two with Q set, and with
        ``worse`` also 10: every top but 00."""
        q, bits = self._q, _bits(code)
        if worse is True:  # Rprop+: every top but 00 is one comparison (3 instructions fewer)
            moving = bits >= q(1)
        else:  # iRprop+: the mask 3Q if worse, else Q, one scalar for the whole step
            moving = (bits & _once_per_step(jnp.where(worse, q(3), q(1)))) != q(0)
        signed = self._magnitude(bits) | _sign_bit(g, self.width)
        signed = self._unscale(jax.lax.bitcast_convert_type(signed, step_dtype(code)))
        return jnp.where(moving, signed, jnp.zeros((), step_dtype(code)))


def _once_per_step(x: jax.Array) -> jax.Array:
    """The unsigned scalar ``x``, computed once per step rather than in every leaf's kernel.

    XLA copies a cheap scalar computation (here iRprop+'s E_t > E_{t-1} and a select)
    into every kernel that reads it, and then each leaf's kernel also reads the loss and
    the state's E_{t-1}. An integer remainder is an operation XLA does not copy: ``x mod
    (2^w - 1)``, which is ``x`` for every ``x`` below 2^w - 1, keeps the scalar in one
    place. On 1,000 leaves: 5 instructions fewer per leaf and a 6% shorter XLA compile."""
    return jax.lax.rem(x, x.dtype.type(np.iinfo(x.dtype).max))


class QuarterSigns(NamedTuple):
    """Signs as the quarters' top bits: 0, Q, 3Q for 0, +1, -1 (2Q: pending, g' = 0).

    The deferred "+" rule reads and writes signs in this form (as the thirds' rules do
    with :class:`ThirdsSigns`): a gradient's are Q plus its own sign bit where it is
    non-zero; two non-zero signs agree where their exclusive or is 0 and differ where
    it is 2Q, the sign bit; fewer instructions than masks."""

    top: jax.Array
    q: Quarters
    nonzero: jax.Array | None = None  # top != 0, where known (as ThirdsSigns.nonzero)

    def of(self, x: jax.Array) -> QuarterSigns:
        """The signs of ``x`` (0 for ±0 and NaN, as :func:`gradtx._numerics.signs`; read
        from the bits, so that subnormals keep theirs under flush-to-zero)."""
        q, nz = self.q._q, nonzero(x)
        return QuarterSigns(jnp.where(nz, _sign_bit(x, self.q.width) | q(1), q(0)), self.q, nz)

    def agreement(self, prev: QuarterSigns) -> tuple[jax.Array, jax.Array]:
        """(x·x' > 0, x·x' < 0) for these signs of x and ``prev``'s of x' (pending: 0)."""
        q, differ = self.q._q, self.top ^ prev.top
        nz = self.top != q(0) if self.nonzero is None else self.nonzero
        return nz & (differ == q(0)), nz & (differ == q(2))

    def pending(self) -> jax.Array:
        """Where a decrease is pending."""
        return self.top == self.q._q(2)

    def marked(self, mask: jax.Array) -> QuarterSigns:
        """These signs, pending where ``mask``."""
        return QuarterSigns(jnp.where(mask, self.q._q(2), self.top), self.q)
