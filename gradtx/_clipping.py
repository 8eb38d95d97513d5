"""Clipping updates: element-wise, by each leaf's norm, or by the global norm.

Three ways to bound a step, from finest to coarsest:

* :func:`clip` bounds every element (optax's ``clip``; torch's ``clip_grad_value_``),
* :func:`clip_by_block_norm` bounds each leaf's own L2 norm (Dragon's ``clip_norm``
  option of its optimizers, which clips every parameter's gradient by its own norm),
  and :func:`clip_by_block_rms` each leaf's root mean square (optax's),
* :func:`clip_by_global_norm` bounds the L2 norm of all leaves together (optax's;
  torch's ``clip_grad_norm_``).

None keeps state. Complex leaves count as pairs of reals: their norm is
:math:`\\sqrt{\\sum |g|^2}`, as in optax and torch.

**Norms that do not overflow (better than optax).** Every norm and RMS here is summed in
float32 for float16 and bfloat16 leaves (as torch's ``clip_grad_norm_`` does), and over
elements scaled by a power of two first, so that it neither overflows nor underflows
where its true value is representable: ``clip_by_global_norm(1.0)`` on float16
``[300, 400]`` gives torch's ``[0.6, 0.8]``, where optax 0.2.8 squares in float16,
overflows to ``inf`` and returns ``[0, 0]``. The scaling is exact, so where optax's sum
of squares stays in range the numbers are optax's, bit for bit.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, Params, Updates
from gradtx._leafwise import leafwise


def clip(max_delta: float | jax.Array) -> GradientTransformation:
    r"""Clip every element of the updates to ``[-max_delta, max_delta]``.

    Formula::

        u = min(max(g, -max_delta), max_delta)        element by element

    .. math:: u = \min(\max(g, -\delta), \delta), \qquad \delta = \texttt{max\_delta}

    Same name, argument and numbers as ``optax.clip`` for real leaves; torch's
    ``clip_grad_value_``. A complex leaf has its real and imaginary parts clipped
    separately (torch's view of complex numbers as pairs of reals).

    Args:
      max_delta: the largest absolute value an update keeps (``>= 0``).

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.clip(1.0)
      >>> updates, _ = tx.update({"w": jnp.array([-3.0, 0.5, 2.0])}, tx.init(None))
      >>> print(updates["w"])
      [-1.   0.5  1. ]
    """
    check.non_negative("max_delta", max_delta)

    def update_leaf(g):
        d = jnp.asarray(max_delta, g.dtype)
        return jnp.clip(g, -d, d), ()

    return leafwise(update_leaf)


def clip_by_block_norm(max_norm: float | jax.Array) -> GradientTransformation:
    r"""Clip each leaf by its own L2 norm (Dragon's ``clip_norm``).

    Formula::

        u = g * (c / ||g||)   where ||g|| > c,   else u = g        (per leaf)

    .. math::
        u = \begin{cases} g \cdot (c / \lVert g\rVert_2) & \lVert g\rVert_2 > c \\
            g & \text{otherwise,} \end{cases}

    with :math:`c` = ``max_norm`` (``> 0``) and the norm taken over that leaf alone, as
    Dragon's ``UpdateOpBase::TransformGrad`` does for each parameter when its optimizer
    has ``clip_norm > 0`` (Dragon applies its ``scale`` first: chain
    ``scale(s)`` before this block). optax has no per-leaf norm clip; its
    ``clip_by_block_rms`` bounds the root *mean* square instead (see
    :func:`clip_by_block_rms`). The norm is summed in float32 for half-precision leaves,
    over elements scaled by a power of two, so it never overflows where it is
    representable (see the module's note).

    Args:
      max_norm: the largest L2 norm a leaf keeps (``> 0``).

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.clip_by_block_norm(1.0)
      >>> grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}
      >>> updates, _ = tx.update(grads, tx.init(None))
      >>> print(updates["a"], updates["b"])
      [0.6 0.8] [0.3 0.4]
    """
    check.positive("max_norm", max_norm)

    def update_leaf(g):
        t, unscale = _sum_of_squares([g])
        norm = unscale(_safe_sqrt(t))
        c = jnp.asarray(max_norm, norm.dtype)
        over = norm > c
        # c / norm only where used, so that jax.grad through a zero leaf is finite
        factor = jnp.where(over, c / jnp.where(over, norm, 1), 1)
        return jnp.where(over, (g.astype(norm.dtype) * factor).astype(g.dtype), g), ()

    return leafwise(update_leaf)


def clip_by_block_rms(threshold: float | jax.Array) -> GradientTransformation:
    r"""Clip each leaf by its root mean square.

    Formula::

        u = g / max(1, rms(g) / threshold),   rms(g) = sqrt(mean(|g|^2))   (per leaf)

    .. math::
        u = \frac{g}{\max(1, \mathrm{rms}(g)/\tau)}, \qquad
        \mathrm{rms}(g) = \sqrt{\mathrm{mean}(|g|^2)},

    with :math:`\tau` = ``threshold`` and the mean over the leaf's elements (a complex
    element counts once, with :math:`|g|^2`). Same name, argument and numbers as
    ``optax.clip_by_block_rms``, except that the RMS never overflows or underflows
    where it is representable (float16 and bfloat16 summed in float32, elements scaled by
    a power of two first; optax squares in the leaf's dtype).

    Args:
      threshold: the largest root mean square a leaf keeps (``> 0``).

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.clip_by_block_rms(1.0)
      >>> updates, _ = tx.update({"w": jnp.array([2.0, -2.0])}, tx.init(None))
      >>> print(updates["w"])
      [ 1. -1.]
    """
    check.positive("threshold", threshold)

    def clip_leaf(g):
        t, unscale = _sum_of_squares([g])
        rms = unscale(jnp.sqrt(t / max(g.size, 1)))
        divisor = jnp.maximum(1.0, rms / jnp.asarray(threshold, rms.dtype))
        wide = jnp.promote_types(g.dtype, rms.dtype)
        return (g.astype(wide) / divisor.astype(wide)).astype(g.dtype), ()

    return leafwise(clip_leaf, complex_as_real=False)


def _parts(g: jax.Array) -> list[jax.Array]:
    """The real arrays whose squares sum to :math:`\\sum |g|^2`: ``g``, or its real and
    imaginary parts."""
    return [jnp.real(g), jnp.imag(g)] if jnp.iscomplexobj(g) else [g]


def _accumulator(dtype: Any) -> Any:
    """The dtype a sum of squares of ``dtype`` values is taken in: float32 for float16 and
    bfloat16 (as torch does), else the real dtype itself (float32 for integers)."""
    real = jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.float32
    return jnp.promote_types(real, jnp.float32)


def _sum_of_squares(leaves: list[jax.Array]) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """``(t, unscale)`` with :math:`\\sum_{\\text{leaves}} \\sum |g|^2 = t\\,4^e` and
    ``unscale(y)`` :math:`= y\\,2^e`: the square root of the sum (a norm) is
    ``unscale(sqrt(t))``, never overflowing or underflowing where the norm is
    representable in the accumulator's dtype (:func:`_accumulator`).

    Every element is multiplied by :math:`2^{-e}` before it is squared, :math:`2^e` the
    largest element's binade, so the squares lie in :math:`[0, 1]`; a power of two
    scales exactly, so where the plain sum of squares neither overflows nor underflows
    ``unscale(sqrt(t))`` has its bits (optax's numbers in float32). Squares of float16
    values cannot leave float32's range: float16 leaves are summed in float32 unscaled."""
    parts = [x for g in leaves for x in _parts(jnp.asarray(g))]
    if not parts:
        return jnp.zeros([], jnp.float32), lambda y: y
    acc = functools.reduce(jnp.promote_types, [_accumulator(x.dtype) for x in parts])
    if all(x.dtype == jnp.float16 for x in parts):
        squares = [jnp.sum(jnp.square(x.astype(acc))) for x in parts]
        return functools.reduce(operator.add, squares), lambda y: y
    top = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(x.astype(acc)), initial=0) for x in parts])
    e = jnp.where(jnp.isfinite(top) & (top > 0), jnp.frexp(top)[1], 0)
    half = e // 2  # 2^e in two factors, each a normal number however large or small e is
    up = (jnp.ldexp(jnp.ones([], acc), half), jnp.ldexp(jnp.ones([], acc), e - half))
    down = (jnp.ldexp(jnp.ones([], acc), -half), jnp.ldexp(jnp.ones([], acc), half - e))
    squares = [jnp.sum(jnp.square(x.astype(acc) * down[0] * down[1])) for x in parts]
    return functools.reduce(operator.add, squares), lambda y: y * up[0] * up[1]


def _safe_sqrt(t: jax.Array) -> jax.Array:
    """``sqrt(t)`` (NaN for NaN), with a finite gradient at 0 (``jax.grad`` through an
    all-zero leaf)."""
    return jnp.where(t > 0, jnp.sqrt(jnp.where(t > 0, t, 1)), t)


def global_norm(updates: Updates) -> jax.Array:
    r"""The L2 norm of all leaves together, as ``optax.tree.norm`` computes it.

    Formula::

        sqrt(sum over leaves of sum(|g|^2))

    .. math:: \lVert g \rVert = \sqrt{\textstyle\sum_{\text{leaves}} \sum |g|^2}

    Args:
      updates: a pytree of arrays (complex elements count with :math:`|g|^2`).

    Unlike ``optax.tree.norm``, it does not overflow or underflow where the norm is
    representable (see the module's note): it squares float16 and bfloat16 leaves in
    float32, each leaf scaled by a power of two first, and returns the norm in that
    accumulator's dtype (float32 for half-precision leaves, so that a norm beyond
    float16's range is still returned; float64 where a leaf is).

    Returns:
      A scalar array.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> print(gradtx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
      5.0
    """
    t, unscale = _sum_of_squares(jax.tree.leaves(updates))
    return unscale(_safe_sqrt(t))


def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    r"""Clip all leaves together by their global L2 norm (Pascanu et al., 2012).

    Formula::

        n = global_norm(g);   u = g   if n < max_norm,   else u = (g / n) * max_norm

    .. math::
        n = \sqrt{\textstyle\sum_{\text{leaves}} \lVert g\rVert_2^2}, \qquad
        u = \begin{cases} g & n < c \\ (g / n)\cdot c & \text{otherwise,} \end{cases}

    with :math:`c` = ``max_norm`` (``> 0``). Same name, argument and numbers as
    ``optax.clip_by_global_norm`` (the same operations in the same order), except that
    the norm never overflows where it is representable, and half-precision leaves are
    divided in float32 (see :func:`global_norm`; optax gives ``[0, 0]`` for float16
    ``[300, 400]``, gradtx torch's ``[0.6, 0.8]``); torch's
    ``clip_grad_norm_`` multiplies by :math:`c / (n + 10^{-6})` instead.

    Args:
      max_norm: the largest global norm the updates keep (``> 0``).

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.clip_by_global_norm(1.0)
      >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
      >>> updates, _ = tx.update(grads, tx.init(None))
      >>> print(updates["a"], updates["b"])
      [0.6] [0.8]
    """
    check.positive("max_norm", max_norm)

    def clip_leaf(g, *, norm):
        wide = jnp.promote_types(g.dtype, norm.dtype)  # g's dtype, or float32 for halves
        c = jnp.asarray(max_norm, wide)
        clipped = ((g.astype(wide) / norm.astype(wide)) * c).astype(g.dtype)
        return jax.lax.select(norm < max_norm, g, clipped), ()

    per_leaf = leafwise(clip_leaf, extra_args=("norm",), complex_as_real=False)

    def update(updates: Updates, state, params: Params | None = None, **extra_args):
        del extra_args
        return per_leaf.update(updates, state, params, norm=global_norm(updates))

    return GradientTransformation(per_leaf.init, update)
