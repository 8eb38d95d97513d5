r"""Schedules: functions from the step count :math:`t` (an ``int32`` scalar, 0 on the first
update) to a scalar hyperparameter value.

Names, arguments, defaults and numbers are optax's (``optax.schedules``, 0.2.8); any
optax schedule, or any function of the count written with ``jax.numpy``, is accepted
wherever gradtx takes a schedule (``scale_by_learning_rate``, ``add_decayed_weights``,
:func:`gradtx.inject_hyperparams`). All are pure and jit-compatible: they branch on the
count with ``jnp.where``, never in Python. Their arguments are checked when built; a
value may be traced (built inside ``jax.jit``) except step counts, ``decay_rate`` and a
one-cycle's ``pct_*``, which fix the schedule's form: those are refused (``TypeError``).

``torch.optim.lr_scheduler`` counterparts: ``StepLR``/``MultiStepLR`` are
:func:`piecewise_constant_schedule`, ``ExponentialLR`` is :func:`exponential_decay`
with ``transition_steps=1``, ``CosineAnnealingLR`` (one half period) is
:func:`cosine_decay_schedule`, ``LinearLR`` is :func:`linear_schedule`, and
``SequentialLR`` is :func:`join_schedules`. torch counts scheduler steps (usually
epochs) where a gradtx schedule counts updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import Scalar, Schedule


def _values(**values: Any) -> None:
    """Check that each (concrete) value is a finite real number (arrays too: traced pass)."""
    for name, value in values.items():
        check.number(name, value)


def _scaled_boundaries(table: Any) -> list[tuple[Any, Any]]:
    """``boundaries_and_scales``, ``{step: scale}`` with integer steps and finite scales
    ``>= 0``, as its items sorted by step; ``None`` or ``{}``: none."""
    if table is not None and not isinstance(table, Mapping):
        raise ValueError(
            f"Invalid boundaries_and_scales: {table!r} (must be a dict {{step: scale}} or None)."
        )
    for step, scale in (table or {}).items():
        check.steps(f"boundaries_and_scales (key {step!r})", step)
        check.number(f"boundaries_and_scales[{step!r}]", scale, check.non_negative)
    return sorted((table or {}).items())


def constant_schedule(value: Scalar) -> Schedule:
    r"""The same value at every step.

    Formula::

        s(t) = value

    .. math:: s(t) = v

    Same as ``optax.constant_schedule``.

    Args:
      value: the value (a finite number or a scalar array).

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> gradtx.constant_schedule(0.1)(1000)
      0.1
    """
    check.number("value", value)

    def schedule(count):
        del count
        return value

    return schedule


def polynomial_schedule(
    init_value: Scalar,
    end_value: Scalar,
    power: Scalar,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""From ``init_value`` to ``end_value`` along a polynomial of the step count.

    Formula::

        s(t) = (I - E) * (1 - tau/T)**P + E,    tau = clip(t - B, 0, T)

    .. math::
        s(t) = (I - E)\,\big(1 - \tau / T\big)^{P} + E, \qquad
        \tau = \operatorname{clip}(t - B, 0, T),

    with :math:`I` = ``init_value``, :math:`E` = ``end_value``, :math:`P` = ``power``,
    :math:`T` = ``transition_steps`` and :math:`B` = ``transition_begin``. As in
    ``optax.polynomial_schedule``, ``transition_steps <= 0`` gives the constant :math:`I` and
    a negative ``transition_begin`` counts as 0.

    Args:
      init_value: the value up to step ``transition_begin``.
      end_value: the value from step ``transition_begin + transition_steps`` on.
      power: the exponent of the polynomial, ``>= 0`` (1: linear).
      transition_steps: the number of steps of the transition (an integer).
      transition_begin: the step at which the transition starts.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
      >>> [round(float(schedule(t)), 2) for t in (0, 5, 10, 20)]
      [1.0, 0.25, 0.0, 0.0]
    """
    _values(init_value=init_value, end_value=end_value)
    check.number("power", power, check.non_negative)
    transition_steps = check.steps("transition_steps", transition_steps)
    transition_begin = check.steps("transition_begin", transition_begin)
    if transition_steps <= 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        tau = jnp.clip(count - transition_begin, 0, transition_steps)
        # XLA may divide by the constant as a multiply by its rounded reciprocal: at the
        # last step 1 - tau/steps can then be +-6e-8, a value off or beyond end_value (a
        # negative weight decay); from the last step on it is end_value, as eagerly
        frac = jnp.where(tau >= transition_steps, 0.0, 1 - tau / transition_steps)
        return (init_value - end_value) * (frac**power) + end_value

    return schedule


def linear_schedule(
    init_value: Scalar, end_value: Scalar, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    r"""Linear from ``init_value`` to ``end_value`` over ``transition_steps`` steps.

    Formula::

        s(t) = I + (E - I) * clip(t - B, 0, T) / T

    .. math:: s(t) = I + (E - I)\,\operatorname{clip}(t - B, 0, T) / T

    :func:`polynomial_schedule` with ``power=1``. Same as ``optax.linear_schedule`` (and
    torch's ``LinearLR``, counted in updates).

    Args:
      init_value: :math:`I`, the value up to step ``transition_begin``.
      end_value: :math:`E`, the value from step ``transition_begin + transition_steps`` on.
      transition_steps: :math:`T`, the number of steps of the transition.
      transition_begin: :math:`B`, the step at which the transition starts.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.linear_schedule(0.0, 1.0, transition_steps=4)
      >>> [float(schedule(t)) for t in range(6)]
      [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: Scalar, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    r"""A value multiplied by a factor at each of some steps.

    Formula::

        s(t) = I * product of f_i over the boundaries b_i <= t

    .. math:: s(t) = I \prod_{b_i \le t} f_i

    for ``boundaries_and_scales`` = :math:`\{b_i: f_i\}`: the value is multiplied by
    :math:`f_i` from step :math:`b_i` on. Same as ``optax.piecewise_constant_schedule``
    (torch's ``MultiStepLR``, with ``gamma`` = each :math:`f_i`).

    Args:
      init_value: :math:`I`, the value before the first boundary.
      boundaries_and_scales: ``{step: factor}``, integer steps; the factors must be ``>= 0``.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1})
      >>> [round(float(schedule(t)), 3) for t in range(6)]
      [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]
    """
    check.number("init_value", init_value)
    items = _scaled_boundaries(boundaries_and_scales)

    def schedule(count):
        v = init_value
        for boundary, factor in items:
            v = jnp.where(count >= boundary, factor * v, v)
        return v

    return schedule


def exponential_decay(
    init_value: Scalar,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Scalar | None = None,
) -> Schedule:
    r"""Exponential decay of the value, by ``decay_rate`` every ``transition_steps`` steps.

    Formula::

        s(t) = I * r**((t - B) / T)   for t > B,   else I

    .. math::
        s(t) = \begin{cases} I\,r^{(t - B)/T} & t > B \\ I & \text{otherwise,} \end{cases}

    with :math:`I` = ``init_value``, :math:`r` = ``decay_rate``, :math:`T` =
    ``transition_steps`` and :math:`B` = ``transition_begin``. ``staircase`` floors the
    exponent; ``end_value`` bounds the result (below if :math:`r < 1`, above otherwise).
    Same as ``optax.exponential_decay``, including its degenerate cases
    (``transition_steps <= 0`` or ``decay_rate == 0``: the constant :math:`I`). torch's
    ``ExponentialLR(gamma)`` is ``transition_steps=1, decay_rate=gamma``.

    Args:
      init_value: :math:`I`, the value up to step ``transition_begin``.
      transition_steps: :math:`T`, the steps over which the value is multiplied by ``decay_rate``.
      decay_rate: :math:`r`, ``>= 0`` (a negative rate to a fractional power is NaN);
        concrete, not traced (whether the value decays or grows is decided here).
      transition_begin: :math:`B`, the step at which the decay starts.
      staircase: decay in steps of ``transition_steps`` instead of continuously.
      end_value: the bound the value does not pass, or ``None``.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
      >>> [float(schedule(t)) for t in range(4)]
      [1.0, 0.5, 0.25, 0.125]
    """
    check.number("init_value", init_value)
    transition_steps = check.steps("transition_steps", transition_steps)
    check.number("decay_rate", decay_rate, check.non_negative, static=True)
    transition_begin = check.steps("transition_begin", transition_begin)
    check.flag("staircase", staircase)
    if end_value is not None:
        check.number("end_value", end_value)
    rate = float(decay_rate)  # concrete: an array closed over inside jit too
    if transition_steps <= 0 or rate == 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)
    bound = None if end_value is None else (jnp.maximum if rate < 1.0 else jnp.minimum)

    def schedule(count):
        since = count - transition_begin
        p = since / transition_steps
        if staircase:
            p = jnp.floor(p)
        value = jnp.where(since <= 0, init_value, init_value * jnp.power(decay_rate, p))
        return value if bound is None else bound(value, end_value)

    return schedule


def cosine_decay_schedule(
    init_value: Scalar, decay_steps: int, alpha: Scalar = 0.0, exponent: Scalar = 1.0
) -> Schedule:
    r"""Cosine decay (Loshchilov & Hutter, 2017) from ``init_value`` to ``alpha * init_value``.

    Formula::

        s(t) = I * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, T) / T)))**p + alpha)

    .. math::
        s(t) = I\,\Big((1-\alpha)\big[\tfrac12\big(1 + \cos(\pi \min(t, T)/T)\big)\big]^{p}
            + \alpha\Big),

    with :math:`I` = ``init_value``, :math:`T` = ``decay_steps`` and :math:`p` =
    ``exponent``; constant after :math:`T`. Same as ``optax.cosine_decay_schedule``
    (torch's ``CosineAnnealingLR`` with ``T_max = T`` and ``eta_min`` = :math:`\alpha I`).

    Args:
      init_value: :math:`I`, the value at step 0.
      decay_steps: :math:`T`, the steps of the decay (an integer ``> 0``).
      alpha: the final value as a fraction of ``init_value``.
      exponent: :math:`p`, the power of the cosine factor, ``>= 0``.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.cosine_decay_schedule(1.0, decay_steps=4)
      >>> [round(float(schedule(t)), 3) for t in range(6)]
      [1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """
    _values(init_value=init_value, alpha=alpha)
    steps = float(check.steps("decay_steps", decay_steps, low=1))
    check.number("exponent", exponent, check.non_negative)

    def schedule(count):
        count = float(count) if isinstance(count, int) else count
        t = jnp.minimum(count, steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * t / steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule
