r"""Schedules built from pieces: interpolation between scaled values (one-cycle), and
warm-up followed by exponential decay or by restarts of cosine decay (SGDR).

Names, arguments, defaults and numbers are optax's (``optax.schedules``, 0.2.8), the same
operations in the same order. ``torch.optim.lr_scheduler`` counterparts: ``OneCycleLR``
is :func:`cosine_onecycle_schedule` (``anneal_strategy="cos"``) or
:func:`linear_onecycle_schedule`; ``CosineAnnealingWarmRestarts`` is
:func:`sgdr_schedule`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import Scalar, Schedule
from gradtx._schedules import _scaled_boundaries, _values, exponential_decay, linear_schedule
from gradtx._schedules_joined import join_schedules, warmup_cosine_decay_schedule


def _linear_interpolate(start, end, pct):
    return (end - start) * pct + start


def _cosine_interpolate(start, end, pct):
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: Scalar,
    boundaries_and_scales: dict[int, float] | None = None,
) -> Schedule:
    r"""Interpolate between values scaled at the boundaries.

    Formula::

        v_i = I * s_1 * ... * s_i                         the value at boundary b_i (b_0 = 0)
        s(t) = interp(v_(i-1), v_i, (t - b_(i-1)) / (b_i - b_(i-1)))   for b_(i-1) <= t < b_i
        s(t) = v_n                                        for t >= b_n

    .. math::
        v_i = I \prod_{j \le i} s_j, \qquad
        s(t) = \operatorname{interp}\Big(v_{i-1}, v_i, \frac{t - b_{i-1}}{b_i - b_{i-1}}\Big)
        \quad (b_{i-1} \le t < b_i),

    with :math:`I` = ``init_value``, ``interp`` linear or along half a cosine, and
    :math:`v_n` after the last boundary. Same as ``optax.piecewise_interpolate_schedule``.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: :math:`I`, the value at step 0.
      boundaries_and_scales: ``{b_i: s_i}``, the scales ``>= 0``.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5})
      >>> [float(schedule(t)) for t in (0, 2, 4, 8)]
      [1.0, 0.75, 0.5, 0.5]
    """
    check.one_of("interpolate_type", interpolate_type, ("linear", "cosine"))
    interpolate = _linear_interpolate if interpolate_type == "linear" else _cosine_interpolate
    check.number("init_value", init_value)
    items = _scaled_boundaries(boundaries_and_scales)
    boundaries, scales = zip(*items) if items else ((), ())

    def schedule(count):
        bounds = jnp.stack((0, *boundaries))
        values = jnp.cumprod(jnp.stack((init_value, *scales)))
        interval_sizes = jnp.maximum(bounds[1:] - bounds[:-1], 1)
        indicator = jnp.logical_and(bounds[:-1] <= count, count < bounds[1:])
        pct = (count - bounds[:-1]) / interval_sizes
        interp_vals = interpolate(values[:-1], values[1:], pct)
        return indicator.dot(interp_vals) + (bounds[-1] <= count) * values[-1]

    return schedule


def _check_onecycle(steps: Any, peak: Any, div: Any, final_div: Any, **pcts: Any) -> list[int]:
    """Check a one-cycle schedule's arguments and return where its phases end
    (``int(pct * steps)``, then ``steps``): at increasing steps, else two would be one."""
    steps = check.steps("transition_steps", steps, low=1)
    check.number("peak_value", peak)
    check.number("div_factor", div, check.positive)
    check.number("final_div_factor", final_div, check.positive)
    for name, pct in pcts.items():
        check.number(name, pct, lambda n, v: check.in_range(n, v, 0.0, 1.0), static=True)
    ends = [*(int(float(pct) * steps) for pct in pcts.values()), steps]
    if sorted(set(ends)) != ends:
        got = ", ".join(f"{k} = {v!r}" for k, v in pcts.items())
        raise ValueError(
            f"Invalid {' and '.join(pcts)}: {got} with transition_steps = {steps!r} (must end "
            f"the phases at increasing steps int(pct * transition_steps); got {ends})."
        )
    return ends


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: Scalar,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""One cycle in three linear phases (Smith & Topin 2017, "Super-convergence").

    From :math:`p/d` (:math:`p` = ``peak_value``, :math:`d` = ``div_factor``) up to
    :math:`p` at ``pct_start * transition_steps``, back to :math:`p/d` at ``pct_final *
    transition_steps``, then to :math:`p/(d\,f)` (:math:`f` = ``final_div_factor``) at
    ``transition_steps``. Same as ``optax.linear_onecycle_schedule``.

    Args:
      transition_steps: the length of the cycle (an ``int > 0``), long enough that the
        phases end at increasing steps.
      peak_value: :math:`p`.
      pct_start: the fraction of the cycle spent rising, in ``[0, 1]`` (concrete).
      pct_final: the fraction of the cycle at whose end the value is back at :math:`p/d`.
      div_factor: :math:`d`.
      final_div_factor: :math:`f`.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.linear_onecycle_schedule(100, peak_value=1.0)
      >>> [round(float(schedule(t)), 3) for t in (0, 30, 85, 100)]
      [0.04, 1.0, 0.04, 0.0]
    """
    start, final, end = _check_onecycle(
        transition_steps,
        peak_value,
        div_factor,
        final_div_factor,
        pct_start=pct_start,
        pct_final=pct_final,
    )
    return piecewise_interpolate_schedule(
        "linear",
        peak_value / div_factor,
        {start: div_factor, final: 1.0 / div_factor, end: 1.0 / final_div_factor},
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: Scalar,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""One cycle along half cosines: up to ``peak_value``, then down (torch's ``OneCycleLR``).

    From :math:`p/d` up to :math:`p` = ``peak_value`` at ``pct_start * transition_steps``,
    then down to :math:`p/(d\,f)` at ``transition_steps`` (:math:`d` = ``div_factor``,
    :math:`f` = ``final_div_factor``). Same as ``optax.cosine_onecycle_schedule``.

    Args:
      transition_steps: the length of the cycle (an ``int > 0``), long enough that the
        phases end at increasing steps.
      peak_value: :math:`p`.
      pct_start: the fraction of the cycle spent rising, in ``[0, 1]`` (concrete).
      div_factor: :math:`d`.
      final_div_factor: :math:`f`.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.cosine_onecycle_schedule(100, peak_value=1.0)
      >>> [round(float(schedule(t)), 3) for t in (0, 15, 30, 100)]
      [0.04, 0.52, 1.0, 0.0]
    """
    start, end = _check_onecycle(
        transition_steps, peak_value, div_factor, final_div_factor, pct_start=pct_start
    )
    return piecewise_interpolate_schedule(
        "cosine",
        peak_value / div_factor,
        {start: div_factor, end: 1.0 / (div_factor * final_div_factor)},
    )


def warmup_exponential_decay_schedule(
    init_value: Scalar,
    peak_value: Scalar,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: Scalar,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Scalar | None = None,
) -> Schedule:
    r"""Linear warm-up to ``peak_value``, then exponential decay from it.

    Formula::

        s(t) = I + (P - I) * t / W                  for t < W
        s(t) = exponential_decay(P, ...)(t - W)     after

    :func:`gradtx.linear_schedule` over ``warmup_steps``, then
    :func:`gradtx.exponential_decay` from ``peak_value`` (its count restarting at 0). Same
    as ``optax.warmup_exponential_decay_schedule``.

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, the value at the end of the warm-up.
      warmup_steps: :math:`W`, an integer ``>= 0``.
      transition_steps: see :func:`gradtx.exponential_decay`.
      decay_rate: see :func:`gradtx.exponential_decay`.
      transition_begin: see :func:`gradtx.exponential_decay`.
      staircase: see :func:`gradtx.exponential_decay`.
      end_value: see :func:`gradtx.exponential_decay`.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> schedule = gradtx.warmup_exponential_decay_schedule(0.0, 1.0, 2, 1, 0.5)
      >>> [float(schedule(t)) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    _values(init_value=init_value, peak_value=peak_value)
    warmup_steps = check.steps("warmup_steps", warmup_steps, low=0)
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup_steps),
            exponential_decay(
                peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
            ),
        ],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[dict[str, Any]]) -> Schedule:
    r"""SGD with warm restarts (Loshchilov & Hutter 2017): cosine cycles one after another.

    Cycles of :func:`gradtx.warmup_cosine_decay_schedule`, one per dict of its keyword
    arguments, each lasting its ``decay_steps``. torch's ``CosineAnnealingWarmRestarts``
    with ``T_mult=1`` is cycles of equal ``decay_steps`` and ``warmup_steps=0``. Same as
    ``optax.sgdr_schedule``.

    Args:
      cosine_kwargs: one dict of :func:`gradtx.warmup_cosine_decay_schedule` arguments
        per cycle.

    Returns:
      A schedule, a function of the step count.

    Example:
      >>> import gradtx
      >>> cycle = dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=4)
      >>> schedule = gradtx.sgdr_schedule([cycle, cycle])
      >>> [round(float(schedule(t)), 3) for t in range(8)]
      [1.0, 0.854, 0.5, 0.146, 1.0, 0.854, 0.5, 0.146]
    """
    boundaries, schedules, step = [], [], 0
    for i, kwargs in enumerate(cosine_kwargs if isinstance(cosine_kwargs, Iterable) else ()):
        try:  # name the cycle, and the argument its own check names
            schedules.append(warmup_cosine_decay_schedule(**kwargs))
        except (TypeError, ValueError) as e:
            raise ValueError(f"Invalid cosine_kwargs[{i}]: {kwargs!r} ({e})") from e
        step += kwargs["decay_steps"]
        boundaries.append(step)
    if not schedules:
        raise ValueError(
            f"Invalid cosine_kwargs: {cosine_kwargs!r} (must be one or more dicts of "
            "warmup_cosine_decay_schedule's arguments)."
        )
    return join_schedules(schedules, boundaries[:-1])
