"""Schedules joined from others: :func:`join_schedules` (torch's ``SequentialLR``) and the
warm-up schedules built on it. Names, arguments and numbers are optax's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import Scalar, Schedule
from gradtx._schedules import _values, cosine_decay_schedule, linear_schedule


def _listed(name: str, value: Any, rule: str) -> list[Any]:
    try:
        return list(value)
    except TypeError:
        raise ValueError(f"Invalid {name}: {value!r} (must be {rule}).") from None


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run several schedules one after the other, each counting from its own start.

    Formula::

        s(t) = s_i(t - b_(i-1))   for b_(i-1) <= t < b_i      (b_(-1) = 0)

    .. math:: s(t) = s_i(t - b_{i-1}) \quad \text{for } b_{i-1} \le t < b_i

    Same as ``optax.join_schedules`` (torch's ``SequentialLR``, counted in updates).

    Args:
      schedules: the schedules, in order.
      boundaries: the steps at which each schedule after the first takes over
        (``len(schedules) - 1`` integers, in order).

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> warmup = gradtx.linear_schedule(0.0, 1.0, transition_steps=2)
      >>> schedule = gradtx.join_schedules([warmup, gradtx.constant_schedule(0.5)], [3])
      >>> [float(schedule(t)) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.5]
    """
    schedules = _listed("schedules", schedules, "a non-empty sequence of schedules")
    boundaries = _listed("boundaries", boundaries, "a sequence of integer steps")
    for i, fn in enumerate(schedules):
        if not callable(fn):
            raise ValueError(f"Invalid schedules[{i}]: {fn!r} (must be a schedule).")
    if len(boundaries) != len(schedules) - 1 or not schedules:
        raise ValueError(
            f"Invalid boundaries: {boundaries!r} (need len(schedules) - 1 = "
            f"{len(schedules) - 1} boundaries, and at least one schedule)."
        )
    low = None  # each concrete boundary is >= the one before (equal: one never runs)
    for i, b in enumerate(boundaries):
        b = check.steps(f"boundaries[{i}]", b, low=low, traced=True)
        low = None if isinstance(b, jax.core.Tracer) else b

    def schedule(count):
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = jnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule


def warmup_constant_schedule(init_value: Scalar, peak_value: Scalar, warmup_steps: int) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value``, then constant.

    Formula::

        s(t) = I + (P - I) * min(t, W) / W

    .. math:: s(t) = I + (P - I)\,\min(t, W) / W

    with :math:`W` = ``warmup_steps``. Same as ``optax.warmup_constant_schedule``.

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, the value from step ``warmup_steps`` on.
      warmup_steps: :math:`W`, the steps of the warm-up (an integer ``>= 0``).

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.warmup_constant_schedule(0.0, 1.0, warmup_steps=2)
      >>> [float(schedule(t)) for t in range(4)]
      [0.0, 0.5, 1.0, 1.0]
    """
    _values(init_value=init_value, peak_value=peak_value)
    warmup_steps = check.steps("warmup_steps", warmup_steps, low=0)
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_cosine_decay_schedule(
    init_value: Scalar,
    peak_value: Scalar,
    warmup_steps: int,
    decay_steps: int,
    end_value: Scalar = 0.0,
    exponent: Scalar = 1.0,
) -> Schedule:
    r"""Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    Formula::

        s(t) = I + (P - I) * t / W                                      for t < W
        s(t) = E + (P - E) * (0.5 * (1 + cos(pi * min(t - W, D - W) / (D - W))))**p   after

    .. math::
        s(t) = \begin{cases}
          I + (P - I)\,t / W & t < W, \\
          E + (P - E)\big[\tfrac12\big(1 + \cos\frac{\pi \min(t - W,\, D - W)}{D - W}\big)\big]^{p}
            & t \ge W,
        \end{cases}

    with :math:`W` = ``warmup_steps`` and :math:`D` = ``decay_steps`` (which includes the
    warm-up). Same as ``optax.warmup_cosine_decay_schedule``.

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, the value at the end of the warm-up.
      warmup_steps: :math:`W`, an integer ``>= 0``.
      decay_steps: :math:`D`, the step at which the value reaches ``end_value`` (``> W``).
      end_value: :math:`E`.
      exponent: :math:`p`, the power of the cosine factor.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=6)
      >>> [round(float(schedule(t)), 3) for t in range(8)]
      [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """
    _values(init_value=init_value, peak_value=peak_value, end_value=end_value)
    warmup_steps = check.steps("warmup_steps", warmup_steps, low=0)
    decay_steps = check.steps("decay_steps", decay_steps, low=warmup_steps + 1)  # a decay >= 1
    if isinstance(peak_value, jax.core.Tracer):  # a zero peak is known only at run time
        zero = peak_value == 0
        alpha = jnp.where(zero, 0.0, end_value / jnp.where(zero, 1.0, peak_value))
    else:
        alpha = 0.0 if float(peak_value) == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )
