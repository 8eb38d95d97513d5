"""Multiplying updates by a number: a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, ScalarOrSchedule, identity
from gradtx._leafwise import counter, leafwise


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # int32 scalar, updates made so far


def _times(factor, g):
    """``factor * g`` in ``g``'s dtype (optax casts the factor first, so do we)."""
    return jnp.asarray(factor, g.dtype) * g


def scale(step_size: float) -> GradientTransformation:
    r""":math:`u_t = s\,g_t` for a fixed scalar :math:`s` = ``step_size``.

    Same as ``optax.scale``; ``scale(-1.0)`` turns an ascent direction into descent
    (and is what ``maximize=True`` prepends in the aliases).
    """
    check.finite("step_size", step_size)
    return leafwise(lambda g: (_times(step_size, g), ()))


def scale_by_schedule(step_size_fn) -> GradientTransformation:
    r""":math:`u_t = s(t)\,g_t` where :math:`s` is a function of the step count :math:`t`
    (0 on the first update). Same as ``optax.scale_by_schedule``."""

    def update_leaf(g, *, step_size):
        return _times(step_size, g), ()

    return leafwise(
        update_leaf,
        state=ScaleByScheduleState,
        scalars=counter(lambda count: {"step_size": step_size_fn(count)}),
    )


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    r""":math:`u_t = -\gamma_t\,g_t` (or :math:`+\gamma_t g_t` when ``flip_sign=False``).

    :math:`\gamma` = ``learning_rate`` is a scalar or a schedule of the step count;
    ``None`` means no scaling. Same as ``optax.scale_by_learning_rate``.
    """
    check.flag("flip_sign", flip_sign)
    if learning_rate is None:
        return identity()
    check.non_negative("learning_rate", learning_rate)
    m = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: m * learning_rate(count))
    return scale(m * learning_rate)
