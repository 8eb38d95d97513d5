r"""Schedules: functions from the step count :math:`t` (an ``int32`` scalar, 0 on the first
update) to a scalar hyperparameter value.

Names, arguments, defaults and numbers are optax's (``optax.schedules``, 0.2.8); any
optax schedule, or any function of the count written with ``jax.numpy``, is accepted
wherever gradtx takes a schedule (``scale_by_learning_rate``, ``add_decayed_weights``,
:func:`gradtx.inject_hyperparams`). All are pure and jit-compatible: they branch on the
count with ``jnp.where``, never in Python.

``torch.optim.lr_scheduler`` counterparts: ``StepLR``/``MultiStepLR`` are
:func:`piecewise_constant_schedule`, ``ExponentialLR`` is :func:`exponential_decay`
with ``transition_steps=1``, ``CosineAnnealingLR`` (one half period) is
:func:`cosine_decay_schedule`, ``LinearLR`` is :func:`linear_schedule`, and
``SequentialLR`` is :func:`join_schedules`. torch counts scheduler steps (usually
epochs) where a gradtx schedule counts updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import Scalar, Schedule


def constant_schedule(value: Scalar) -> Schedule:
    r""":math:`s(t) = v` for every :math:`t`. Same as ``optax.constant_schedule``."""

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
    r"""From :math:`I` = ``init_value`` to :math:`E` = ``end_value`` along a polynomial:

    .. math::
        s(t) = (I - E)\,\big(1 - \tau / T\big)^{P} + E, \qquad
        \tau = \operatorname{clip}(t - B, 0, T),

    with :math:`T` = ``transition_steps``, :math:`B` = ``transition_begin`` and
    :math:`P` = ``power``. As in ``optax.polynomial_schedule``, ``transition_steps <= 0``
    gives the constant :math:`I` and a negative ``transition_begin`` counts as 0.
    """
    if transition_steps <= 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)

    def schedule(count):
        tau = jnp.clip(count - transition_begin, 0, transition_steps)
        frac = 1 - tau / transition_steps
        return (init_value - end_value) * (frac**power) + end_value

    return schedule


def linear_schedule(
    init_value: Scalar, end_value: Scalar, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    r"""Linear from ``init_value`` to ``end_value`` over ``transition_steps`` updates after
    ``transition_begin``: :func:`polynomial_schedule` with ``power=1``. Same as
    ``optax.linear_schedule`` (and torch's ``LinearLR``, counted in updates)."""
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: Scalar, boundaries_and_scales: dict[int, float] | None = None
) -> Schedule:
    r""":math:`s(t) = I \prod_{b_i \le t} f_i` for ``boundaries_and_scales`` =
    :math:`\{b_i: f_i\}`: the value is multiplied by :math:`f_i` from update
    :math:`b_i` on. Same as ``optax.piecewise_constant_schedule`` (torch's
    ``MultiStepLR`` with ``gamma`` = each :math:`f_i`). The scales must be ``>= 0``.
    """
    items = sorted((boundaries_and_scales or {}).items())
    for boundary, factor in items:
        if not factor >= 0.0:
            raise ValueError(
                f"Invalid boundaries_and_scales: scale {factor!r} at step {boundary} "
                "(must be >= 0)."
            )

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
    r""":math:`s(t) = I\,r^{(t - B)/T}` for :math:`t > B`, else :math:`I`.

    :math:`I` = ``init_value``, :math:`r` = ``decay_rate``, :math:`T` =
    ``transition_steps``, :math:`B` = ``transition_begin``; ``staircase`` floors the
    exponent; ``end_value`` bounds the result (below if :math:`r < 1`, above otherwise).
    Same as ``optax.exponential_decay``, including its degenerate cases
    (``transition_steps <= 0`` or ``decay_rate == 0``: the constant :math:`I`).
    torch's ``ExponentialLR(gamma)`` is ``transition_steps=1, decay_rate=gamma``.
    """
    if transition_steps <= 0 or decay_rate == 0:
        return constant_schedule(init_value)
    transition_begin = max(transition_begin, 0)
    bound = None if end_value is None else (jnp.maximum if decay_rate < 1.0 else jnp.minimum)

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
    r"""Cosine decay (Loshchilov & Hutter, 2017) from :math:`I` = ``init_value`` to
    :math:`\alpha I` over :math:`T` = ``decay_steps`` updates, then constant:

    .. math::
        s(t) = I\,\Big((1-\alpha)\big[\tfrac12\big(1 + \cos(\pi \min(t, T)/T)\big)\big]^{p}
            + \alpha\Big),

    with :math:`p` = ``exponent``. Same as ``optax.cosine_decay_schedule`` (torch's
    ``CosineAnnealingLR`` with ``T_max = T`` and ``eta_min`` = :math:`\alpha I`).
    """
    check.positive("decay_steps", decay_steps)
    steps = float(decay_steps)

    def schedule(count):
        count = float(count) if isinstance(count, int) else count
        t = jnp.minimum(count, steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * t / steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run ``schedules[i]`` from ``boundaries[i-1]`` to ``boundaries[i]``, each seeing the
    count since its own start: :math:`s(t) = s_i(t - b_{i-1})` for
    :math:`b_{i-1} \le t < b_i`. Same as ``optax.join_schedules`` (torch's
    ``SequentialLR``, counted in updates)."""
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"Invalid boundaries: {list(boundaries)!r} (need len(schedules) - 1 = "
            f"{len(schedules) - 1} boundaries)."
        )

    def schedule(count):
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = jnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule


def warmup_constant_schedule(init_value: Scalar, peak_value: Scalar, warmup_steps: int) -> Schedule:
    r"""Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps`` updates,
    then constant. Same as ``optax.warmup_constant_schedule``."""
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_cosine_decay_schedule(
    init_value: Scalar,
    peak_value: Scalar,
    warmup_steps: int,
    decay_steps: int,
    end_value: Scalar = 0.0,
    exponent: Scalar = 1.0,
) -> Schedule:
    r"""Linear warm-up to ``peak_value`` over ``warmup_steps``, then cosine decay to
    ``end_value`` at update ``decay_steps`` (which includes the warm-up). Same as
    ``optax.warmup_cosine_decay_schedule``."""
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )
