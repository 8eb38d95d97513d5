"""The per-leaf arithmetic of RMSprop's normalisers (:mod:`gradtx._rms`), each step
written so that it rounds as ``torch.optim.RMSprop`` does, jitted or eager."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import safe_increment
from gradtx._leafwise import counter
from gradtx._numerics import one_minus_power, widened


def ema_sq(decay, nu, g):
    """:math:`\\nu \\leftarrow (1-\\beta)\\,g^2 + \\beta\\,\\nu` as torch's ``addcmul``
    rounds it: :math:`((1-\\beta) g)\\cdot g + \\beta\\nu`, :math:`\\beta\\nu` rounded first
    and the last product fused into the add. Written as a difference because LLVM then
    fuses the first product, the one torch fuses (docs/performance.md)."""
    return ((1 - decay) * g) * g - (-decay) * nu


def lerp(moment, x, decay):
    """The same average written as torch's ``lerp``: :math:`m + w\\,(x - m)`, :math:`w =
    1-\\beta` (or :math:`x - (x - m)(1 - w)` when :math:`w \\ge 1/2`), which rounds
    exactly as ``torch.optim.RMSprop(centered=True)`` does."""
    w = 1 - decay
    if isinstance(w, float):
        return moment + w * (x - moment) if w < 0.5 else x - (x - moment) * (1 - w)
    return jnp.where(w < 0.5, moment + w * (x - moment), x - (x - moment) * (1 - w))


def normalise(g, var, eps, eps_in_sqrt):
    """:math:`g / \\sqrt{v + \\epsilon}` or :math:`g / (\\sqrt{v} + \\epsilon)`.

    ``abs`` turns a root of -0 into +0 and changes nothing else (NaN stays NaN): a
    centered variance can cancel to -0, and with :math:`\\epsilon` rounded to 0 (float16)
    XLA drops the ``+ eps``, so the step would be :math:`-\\infty` times the gradient's
    sign, uphill, where torch's ``-0 + eps`` gives +0 and a downhill step."""
    if eps_in_sqrt:
        return g * jnp.abs(jax.lax.rsqrt(var + eps))
    return g / jnp.abs(jnp.sqrt(var) + eps)


def _penalised(g, p, wd, maximize):
    r""":math:`\pm g + \lambda\theta` (without ``p``: :math:`-g`)."""
    g = -g if maximize else g
    return g if p is None else g + wd * p


def inputs_of(decays: bool, maximize: bool):
    r"""The normaliser's three uses of its input, in the averages' dtype: the one squared
    into :math:`\nu`, the one averaged into :math:`\mu` and the one its update divides.
    Without weight decay or ``maximize`` all are the gradient; with them all are
    :math:`\pm g + \lambda\theta`, the last computed again behind
    ``lax.optimization_barrier``; with ``maximize`` alone the squared one is :math:`g`
    (the same square, and the same rounding of :math:`\nu` as from a stored :math:`-g`:
    a negation inside the loop changes which product LLVM fuses).

    Why twice: one value that feeds both the averages' loops and the update's loop is
    written by XLA to a temporary buffer at every step; two values computed alike fuse
    each into its own loop (the barrier keeps XLA from merging them): the same numbers,
    no temporary (docs/performance.md). Where the averages are wider than the param
    (``accumulator_dtype``) the input must be rounded to the param's dtype before it is
    widened, and only a stored value is sure to be: it is computed once and stored.

    ``inputs(g, acc_dtype, p=None, wd=None) -> (squared, averaged, divided)``: ``p`` is
    the param and ``wd`` :math:`\lambda`, a rule argument so that a traced value works."""
    if not (decays or maximize):

        def plain(g, acc_dtype):
            g = widened(g, acc_dtype)
            return g, g, g

        return plain
    f = functools.partial(_penalised, maximize=maximize)

    def inputs(g, acc_dtype, p=None, wd=None):
        wide = jnp.promote_types(g.dtype, acc_dtype)
        if wide != g.dtype:
            stored = jax.lax.optimization_barrier(f(g, p, wd)).astype(wide)
            return stored, stored, stored
        g_in = f(g, p, wd)
        return (g_in if decays else g), g_in, f(*jax.lax.optimization_barrier((g, p)), wd)

    return inputs


def inverse_one_minus_power(decay, t):
    r""":math:`1 / (1 - \beta^t)` for :math:`t \ge 1`: 1 for :math:`\beta = 0` (whose
    logarithm ``one_minus_power`` cannot take), else a reciprocal of
    :func:`gradtx._numerics.one_minus_power`, to be multiplied (XLA turns a division by
    a scalar into that product in some programs only: dividing would round differently
    eagerly and under ``jit``)."""
    if check.is_python_number(decay) and decay == 0:
        return jnp.ones([], jnp.result_type(float))
    return 1 / one_minus_power(decay, t)


def bias_correction(decay, corrected: bool):
    """The ``count`` of the counted states, handing every leaf its ``correction``
    :math:`1 / (1 - \\beta^t)` at the new count :math:`t`; ``None`` without correction."""
    if not corrected:
        return None
    return counter(
        lambda count: {"correction": inverse_one_minus_power(decay, safe_increment(count))}
    )
