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
"""

from __future__ import annotations

import operator

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
    :func:`clip_by_block_rms`).

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
        c = jnp.asarray(max_norm, g.dtype)
        sq = jnp.sum(g * g)
        # sqrt and c / norm only where used, so that jax.grad through a zero leaf is finite
        norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1)), 0)
        over = norm > c
        factor = jnp.where(over, c / jnp.where(over, norm, 1), 1)
        return jnp.where(over, g * factor, g), ()

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
    ``optax.clip_by_block_rms``.

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
        rms = jnp.sqrt(jnp.mean(_abs_sq(g)))
        return g / jnp.maximum(1.0, rms / jnp.asarray(threshold, rms.dtype)).astype(g.dtype), ()

    return leafwise(clip_leaf, complex_as_real=False)


def _abs_sq(g: jax.Array) -> jax.Array:
    """:math:`|g|^2` element-wise, real for complex ``g``."""
    return jnp.square(jnp.real(g)) + jnp.square(jnp.imag(g)) if jnp.iscomplexobj(g) else g * g


def global_norm(updates: Updates) -> jax.Array:
    r"""The L2 norm of all leaves together, as ``optax.tree.norm`` computes it.

    Formula::

        sqrt(sum over leaves of sum(|g|^2))

    .. math:: \lVert g \rVert = \sqrt{\textstyle\sum_{\text{leaves}} \sum |g|^2}

    Args:
      updates: a pytree of arrays (complex elements count with :math:`|g|^2`).

    Returns:
      A scalar array.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> print(gradtx.global_norm({"a": jnp.array([3.0]), "b": jnp.array([4.0])}))
      5.0
    """
    sums = jax.tree.map(lambda g: jnp.sum(_abs_sq(jnp.asarray(g))), updates)
    return jnp.sqrt(jax.tree.reduce(operator.add, sums, initializer=0))


def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    r"""Clip all leaves together by their global L2 norm (Pascanu et al., 2012).

    Formula::

        n = global_norm(g);   u = g   if n < max_norm,   else u = (g / n) * max_norm

    .. math::
        n = \sqrt{\textstyle\sum_{\text{leaves}} \lVert g\rVert_2^2}, \qquad
        u = \begin{cases} g & n < c \\ (g / n)\cdot c & \text{otherwise,} \end{cases}

    with :math:`c` = ``max_norm`` (``> 0``). Same name, argument and numbers as
    ``optax.clip_by_global_norm`` (the same operations in the same order); torch's
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
        c = jnp.asarray(max_norm, g.dtype)
        return jax.lax.select(norm < max_norm, g, (g / norm.astype(g.dtype)) * c), ()

    per_leaf = leafwise(clip_leaf, extra_args=("norm",), complex_as_real=False)

    def update(updates: Updates, state, params: Params | None = None, **extra_args):
        del extra_args
        return per_leaf.update(updates, state, params, norm=global_norm(updates))

    return GradientTransformation(per_leaf.init, update)
