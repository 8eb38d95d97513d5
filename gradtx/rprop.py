"""Rprop, resilient backpropagation: a per-weight step size adapted by gradient signs.

Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning:
the RPROP algorithm", ICNN 1993; the variant here is iRprop- of Igel & Hüsken,
"Improving the Rprop learning algorithm", 2000, which is what ``torch.optim.Rprop``
implements.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, leafwise


class ScaleByRpropState(NamedTuple):
    step_sizes: Any  # Δ, per weight, in the param's dtype; mirrors params
    prev_signs: Any  # sign of the previous (possibly zeroed) gradient, int8; mirrors params


def sign(x: jax.Array) -> jax.Array:
    """The sign of ``x`` as ``int8``, with ``sign(NaN) = 0`` as in ``torch.sign``."""
    return (x > 0).astype(jnp.int8) - (x < 0).astype(jnp.int8)


def check_rprop_args(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, names):
    """Validate Rprop's hyperparameters; ``names`` maps each to the caller's spelling."""
    check.non_negative(names[0], learning_rate)
    em, ep = check.finite(names[1], eta_minus), check.finite(names[2], eta_plus)
    if em is not None and not 0.0 < em < 1.0:
        raise ValueError(f"Invalid {names[1]}: {eta_minus!r} (must be in (0, 1)).")
    if ep is not None and not ep > 1.0:
        raise ValueError(f"Invalid {names[2]}: {eta_plus!r} (must be > 1).")
    lo, hi = check.finite(names[3], min_step_size), check.finite(names[4], max_step_size)
    if lo is not None and not lo >= 0.0:
        raise ValueError(f"Invalid {names[3]}: {min_step_size!r} (must be >= 0).")
    if lo is not None and hi is not None and not lo <= hi:
        raise ValueError(
            f"Invalid {names[4]}: {max_step_size!r} (must be >= {names[3]} = {min_step_size!r})."
        )


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    r"""Rprop's sign rule (iRprop-), returning :math:`\operatorname{sign}(g_t)\,\Delta_t`.

    With :math:`g'` the previous gradient as stored (zeroed where its sign flipped),
    :math:`\Delta_0` = ``learning_rate`` and every product judged by its sign:

    .. math::
        \Delta_t = \operatorname{clip}\big(\Delta_{t-1}\cdot
            \begin{cases}\eta^+ & g_t g'_{t-1} > 0\\ \eta^- & g_t g'_{t-1} < 0\\
            1 & \text{otherwise}\end{cases},\ \Delta_{\min},\ \Delta_{\max}\big), \\
        g'_t = \begin{cases} 0 & g_t g'_{t-1} < 0 \\ g_t & \text{otherwise}\end{cases},
        \qquad u_t = \operatorname{sign}(g'_t)\,\Delta_t .

    The update points uphill, like a gradient: chain it with ``scale(-1.0)`` to descend
    (as :func:`gradtx.rprop` does). Same arguments and defaults as ``optax.scale_by_rprop``.

    Differences from optax 0.2.8, where we follow the paper and ``torch.optim.Rprop``:
    optax returns each step's update one step late (its first update is zero), and it
    does not clip :math:`\Delta` into the bounds when :math:`g_t g'_{t-1} = 0`, so a
    ``learning_rate`` outside the bounds is used as is on the first step.

    State: :math:`\Delta` in the param's dtype and the *sign* of :math:`g'` as ``int8``
    (5 bytes per float32 weight; torch keeps :math:`g'` itself, 8). The rule only ever
    looks at the sign of :math:`g_t g'_{t-1}`, which is :math:`\operatorname{sign}(g_t)
    \operatorname{sign}(g'_{t-1})`; the one place the two can disagree is when the
    product of two tiny floats underflows to 0 in torch, which torch then reads as
    "no information" while gradtx still reads the signs. ``sign(NaN)`` is 0 (torch's
    convention): a NaN gradient leaves its weight and step size unchanged this step and
    gives no sign information to the next.
    """
    check_rprop_args(
        learning_rate,
        eta_minus,
        eta_plus,
        min_step_size,
        max_step_size,
        ("learning_rate", "eta_minus", "eta_plus", "min_step_size", "max_step_size"),
    )

    def init_leaf(p):
        return jnp.full_like(p, learning_rate), jnp.zeros(p.shape, jnp.int8)

    def update_leaf(g, step, prev_sign):
        s = sign(g)
        agree = s * prev_sign  # sign of g_t * g'_{t-1}
        factor = jnp.where(agree > 0, eta_plus, jnp.where(agree < 0, eta_minus, 1.0))
        step = jnp.clip(step * factor.astype(step.dtype), min_step_size, max_step_size)
        s = jnp.where(agree < 0, 0, s).astype(jnp.int8)  # forget the flipped gradient
        return s.astype(step.dtype) * step, (step, s)

    return leafwise(update_leaf, state=ScaleByRpropState, init_leaf=init_leaf)
