"""Multiplying updates by a number: a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, ScalarOrSchedule, identity
from gradtx._leafwise import counter, leafwise


class ScaleByScheduleState(NamedTuple):
    r"""The state of :func:`scale_by_schedule`: the number of updates made so far.

    Attributes:
      count: an ``int32`` scalar, 0 before the first update.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.scale_by_schedule(lambda t: 0.1).init({"w": jnp.zeros(2)})
      ScaleByScheduleState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # int32 scalar, updates made so far


def _times(factor, g):
    """``factor * g`` in ``g``'s dtype (optax casts the factor first, so do we). A factor
    of -1 (``scale(-1.0)``, the aliases' descent) is a negation: the same numbers (a NaN's
    sign bit aside) in one compiled instruction instead of three (a constant, its
    broadcast, a product), and XLA's compile time grows with the instruction count."""
    if check.is_python_number(factor) and factor == -1:
        return -g
    return jnp.asarray(factor, g.dtype) * g


def scale(step_size: float) -> GradientTransformation:
    r"""Multiply the updates by a fixed number.

    Formula::

        u_t = step_size * g_t

    .. math:: u_t = s\,g_t, \qquad s = \texttt{step\_size}

    Same as ``optax.scale``; ``scale(-1.0)`` turns an ascent direction into descent (and is
    what ``maximize=True`` prepends in the aliases).

    Args:
      step_size: the factor (finite).

    Returns:
      A stateless :class:`~gradtx.GradientTransformation`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale(-0.5)
      >>> updates, _ = tx.update({"w": jnp.array([1.0, -2.0])}, tx.init(None))
      >>> print(updates["w"])
      [-0.5  1. ]
    """
    check.finite("step_size", step_size)
    return leafwise(lambda g: (_times(step_size, g), ()))


def scale_by_schedule(step_size_fn) -> GradientTransformation:
    r"""Multiply the updates by a function of the step count.

    Formula::

        u_t = s(t) * g_t          t = 0 on the first update

    .. math:: u_t = s(t)\,g_t

    Same as ``optax.scale_by_schedule``, except that its values are checked (optax takes
    any): each must be a finite real scalar (one that is not is refused, never broadcast),
    checked at step 0 here and at every eager step, and for its shape only under ``jit``
    (no host sync in a compiled step); the error names the step.

    Args:
      step_size_fn: a schedule: a function from the ``int32`` step count to a scalar.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a
      :class:`ScaleByScheduleState`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale_by_schedule(lambda t: 1.0 / (t + 1))
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for _ in range(3):
      ...     updates, state = tx.update({"w": jnp.ones(1)}, state)
      ...     print(updates["w"])
      [1.]
      [0.5]
      [0.33333334]
    """

    return _scaled_by(check.schedule("step_size_fn", step_size_fn, check.finite))


def _scaled_by(step_size_fn) -> GradientTransformation:
    """:func:`scale_by_schedule` of a schedule already checked."""

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
    r"""Multiply the updates by minus the learning rate (a number or a schedule).

    Formula::

        u_t = -lr(t) * g_t           (+lr(t) * g_t with flip_sign=False)

    .. math::
        u_t = -\gamma_t\,g_t \quad (\text{or } +\gamma_t\,g_t \text{ with }
        \texttt{flip\_sign=False})

    Same as ``optax.scale_by_learning_rate``.

    Args:
      learning_rate: :math:`\gamma`, a number ``>= 0`` or a schedule of the step count
        whose values are ``>= 0`` (checked at step 0 here and at every eager step: a
        negative rate would climb; a value that is not a scalar is refused, never
        broadcast); ``None`` means no scaling.
      flip_sign: negate, turning a gradient into a descent step (the default).

    Returns:
      A :class:`~gradtx.GradientTransformation`, stateless for a number, with a
      :class:`ScaleByScheduleState` for a schedule.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale_by_learning_rate(0.1)
      >>> updates, _ = tx.update({"w": jnp.array([1.0, -2.0])}, tx.init(None))
      >>> print(updates["w"])
      [-0.1  0.2]
    """
    check.flag("flip_sign", flip_sign)
    if learning_rate is None:
        return identity()
    check.non_negative("learning_rate", learning_rate)
    m = -1 if flip_sign else 1
    if callable(learning_rate):
        lr = check.schedule("learning_rate", learning_rate, check.non_negative)
        return _scaled_by(lambda count: m * lr(count))
    return scale(m * learning_rate)
