r"""Wrappers: a transform around a transform (and :mod:`gradtx._inject`).

* :class:`MultiSteps` accumulates :math:`k` micro-batch gradients and steps once
  (optax's ``MultiSteps``; Dragon's ``Optimizer.sum_grad``).
* :func:`apply_if_finite` skips steps whose gradients hold a NaN or an Inf (optax's
  ``apply_if_finite``).

Each keeps its own counters as ``int32`` scalars and the wrapped transform's state
untouched inside (``inner_state`` / ``inner_opt_state``), so checkpointing tools see a
plain pytree of arrays.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    safe_increment,
    update_with_extra_args,
)

# --------------------------------------------------------------------------------------
# apply_if_finite
# --------------------------------------------------------------------------------------


class ApplyIfFiniteState(NamedTuple):
    """The state of :func:`apply_if_finite` (optax's ``ApplyIfFiniteState`` layout).

    Attributes:
      notfinite_count: ``int32``, the non-finite updates in a row so far.
      last_finite: ``bool``, whether the last update was finite.
      total_notfinite: ``int32``, the non-finite updates in all.
      inner_state: the guarded transform's state.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.apply_if_finite(gradtx.identity(), 3).init({"w": jnp.zeros(2)})
      ApplyIfFiniteState(notfinite_count=Array(0, dtype=int32),
                         last_finite=Array(True, dtype=bool),
                         total_notfinite=Array(0, dtype=int32), inner_state=EmptyState())
    """

    notfinite_count: jax.Array  # int32: consecutive non-finite updates so far
    last_finite: jax.Array  # bool: whether the last update was finite
    total_notfinite: jax.Array  # int32: non-finite updates in all
    inner_state: OptState


def _all_finite(tree: Updates) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradientTransformation:
    r"""Skip an update whose gradients hold a NaN or an Inf anywhere.

    On a non-finite update the step returns zeros and keeps ``inner``'s state, and the
    counts go up; after more than ``max_consecutive_errors`` non-finite updates in a row
    the update is passed to ``inner`` anyway (and its NaNs through). A finite update
    resets the consecutive count. Formally, with :math:`n_t` the consecutive count,

    Formula::

        n_t = 0 if g_t is finite, else n_(t-1) + 1
        (u_t, s_t) = inner(g_t, s_(t-1))   if g_t is finite or n_t > max_consecutive_errors
        (u_t, s_t) = (0, s_(t-1))          otherwise

    .. math::
        n_t = \begin{cases} 0 & g_t \text{ finite} \\ n_{t-1} + 1 & \text{otherwise}
        \end{cases}, \qquad
        (u_t, s_t) = \begin{cases} \mathrm{inner}(g_t, s_{t-1}) & g_t \text{ finite or }
        n_t > N \\ (0, s_{t-1}) & \text{otherwise.} \end{cases}

    Same arguments, state layout (:class:`ApplyIfFiniteState`) and behaviour as
    ``optax.apply_if_finite``.

    Args:
      inner: the transform to guard.
      max_consecutive_errors: :math:`N`, the non-finite updates in a row that are skipped
        before one is passed on (an ``int >= 0``).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is an
      :class:`ApplyIfFiniteState`.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.apply_if_finite(gradtx.scale_by_learning_rate(0.1), 3)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> updates, state = tx.update({"w": jnp.array([1.0, jnp.nan])}, state)
      >>> print(updates["w"], int(state.notfinite_count), int(state.total_notfinite))
      [0. 0.] 1 1
      >>> updates, state = tx.update({"w": jnp.array([1.0, 2.0])}, state)
      >>> print(updates["w"], int(state.notfinite_count), int(state.total_notfinite))
      [-0.1 -0.2] 0 1
    """
    if isinstance(max_consecutive_errors, bool) or not isinstance(
        max_consecutive_errors, numbers.Integral
    ):
        raise ValueError(
            f"Invalid max_consecutive_errors: {max_consecutive_errors!r} (must be an int)."
        )
    if max_consecutive_errors < 0:
        raise ValueError(
            f"Invalid max_consecutive_errors: {max_consecutive_errors!r} (must be >= 0)."
        )
    inner_update = update_with_extra_args(inner)

    def init(params: Params) -> ApplyIfFiniteState:
        # distinct buffers, not one array twice: a donated step would donate it twice
        notfinite, total = jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)
        return ApplyIfFiniteState(notfinite, jnp.array(True), total, inner.init(params))

    def update(updates: Updates, state: ApplyIfFiniteState, params=None, **extra_args):
        finite = _all_finite(updates)
        notfinite = jnp.where(finite, 0, safe_increment(state.notfinite_count))
        notfinite = notfinite.astype(jnp.int32)

        def apply(_):
            return inner_update(updates, state.inner_state, params, **extra_args)

        def skip(_):
            return jax.tree.map(jnp.zeros_like, updates), state.inner_state

        new_updates, inner_state = jax.lax.cond(
            jnp.logical_or(finite, notfinite > max_consecutive_errors), apply, skip, None
        )
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return new_updates, ApplyIfFiniteState(
            notfinite, finite, total.astype(jnp.int32), inner_state
        )

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------
# MultiSteps: gradient accumulation
# --------------------------------------------------------------------------------------


class MultiStepsState(NamedTuple):
    """optax's ``MultiStepsState`` layout, less its ``skip_state``."""

    mini_step: jax.Array  # int32: micro-batches accumulated since the last real step
    gradient_step: jax.Array  # int32: real steps made (updates of the inner transform)
    inner_opt_state: OptState
    acc_grads: Updates  # the running sum of the micro-batch gradients


class MultiSteps:
    r"""Accumulate the gradients of :math:`k` micro-batches, then make one step.

    With :math:`k` = ``every_k_schedule(gradient_step)`` (an ``int`` or a function of
    the number of real steps made) and :math:`g_1, \dots, g_k` the gradients of the
    micro-batches since the last step, the :math:`k`-th call passes

    .. math::
        \bar g = \tfrac1k \textstyle\sum_i g_i \ (\texttt{reduce="mean"}) \quad\text{or}
        \quad \bar g = \textstyle\sum_i g_i \ (\texttt{reduce="sum"})

    to ``transform`` and returns its update; the other calls return zeros and leave the
    inner state alone, so the inner state advances once per :math:`k` calls.
    ``"mean"`` over equal micro-batches is the gradient of one :math:`k`-times-larger
    batch of a mean loss; ``"sum"`` is Dragon's ``Optimizer.sum_grad()`` (and torch's
    habit of calling ``backward`` :math:`k` times before ``step``).

    Like ``optax.MultiSteps`` (``use_grad_mean=True`` is ``reduce="mean"``), with these
    differences: the accumulator sums and ``"mean"`` divides once at the step (optax
    keeps a running mean; the two agree to rounding); its dtype is each gradient's own
    unless ``accumulator_dtype`` is given (optax: float32); and the inner update runs
    only on the :math:`k`-th call (``lax.cond``), where optax runs it every call and
    masks the result, so a NaN in a discarded inner update cannot leak through.

    ``MultiSteps(...)`` has ``init`` and ``update`` and can be used wherever a transform
    is expected; :meth:`gradient_transformation` returns the plain pair.
    """

    def __init__(
        self,
        transform: Any,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        reduce: str = "mean",
        accumulator_dtype: Any | None = None,
    ):
        if reduce not in ("mean", "sum"):
            raise ValueError(f"Invalid reduce: {reduce!r} (must be 'mean' or 'sum').")
        if not callable(every_k_schedule):
            if isinstance(every_k_schedule, bool) or not isinstance(
                every_k_schedule, numbers.Integral
            ):
                raise ValueError(
                    f"Invalid every_k_schedule: {every_k_schedule!r} (must be an int >= 1 "
                    "or a schedule)."
                )
            if every_k_schedule < 1:
                raise ValueError(f"Invalid every_k_schedule: {every_k_schedule!r} (must be >= 1).")
            k = int(every_k_schedule)
            every_k_schedule = lambda step: k  # noqa: E731
        self._inner = transform
        self._every_k = every_k_schedule
        self._mean = reduce == "mean"
        self._acc_dtype = None if accumulator_dtype is None else jnp.dtype(accumulator_dtype)
        self._inner_update = update_with_extra_args(transform)

    @property
    def inner_opt(self) -> Any:
        return self._inner

    def init(self, params: Params) -> MultiStepsState:
        def zeros(p):
            p = jnp.asarray(p)
            return jnp.zeros(p.shape, self._acc_dtype or p.dtype)

        # two buffers, not one array twice: a donated step would donate it twice
        mini_step, gradient_step = jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)
        inner = self._inner.init(params)
        return MultiStepsState(mini_step, gradient_step, inner, jax.tree.map(zeros, params))

    def update(
        self,
        updates: Updates,
        state: MultiStepsState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, MultiStepsState]:
        k = jnp.asarray(self._every_k(state.gradient_step), jnp.int32)
        acc = jax.tree.map(
            lambda a, g: a + jnp.asarray(g).astype(a.dtype), state.acc_grads, updates
        )
        emit = state.mini_step >= k - 1

        def step(_):
            def reduced(a, g):
                a = a / k.astype(a.dtype) if self._mean else a
                return a.astype(jnp.asarray(g).dtype)

            grads = jax.tree.map(reduced, acc, updates)
            new_updates, inner_state = self._inner_update(
                grads, state.inner_opt_state, params, **extra_args
            )
            return new_updates, inner_state, jax.tree.map(jnp.zeros_like, acc)

        def accumulate(_):
            zeros = jax.tree.map(lambda g: jnp.zeros_like(jnp.asarray(g)), updates)
            return zeros, state.inner_opt_state, acc

        new_updates, inner_state, acc = jax.lax.cond(emit, step, accumulate, None)
        mini_step = jnp.where(emit, 0, state.mini_step + 1).astype(jnp.int32)
        gradient_step = jnp.where(
            emit, safe_increment(state.gradient_step), state.gradient_step
        ).astype(jnp.int32)
        return new_updates, MultiStepsState(mini_step, gradient_step, inner_state, acc)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the last ``update`` made a real step (``mini_step`` is back at 0)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        return GradientTransformation(self.init, self.update)
