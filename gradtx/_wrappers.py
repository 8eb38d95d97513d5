r"""Wrappers: a transform around a transform, its state or arguments kept untouched.

* :func:`apply_if_finite` skips steps whose gradients hold a NaN or an Inf (optax's
  ``apply_if_finite``); it keeps its counters as ``int32`` scalars and the wrapped
  transform's state inside (``inner_state``), a plain pytree of arrays.
* :func:`negated_value` hands the wrapped transform ``value=-value`` (how ``rprop``
  maximises with a rule that reads the loss).

Other wrappers have modules of their own: :class:`gradtx.MultiSteps`
(:mod:`gradtx._accumulation`) and :func:`gradtx.inject_hyperparams` (:mod:`gradtx._inject`).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    abstract_aware,
    safe_increment,
    update_with_extra_args,
)
from gradtx._trees import check_state

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

    @abstract_aware
    def init(params: Params) -> ApplyIfFiniteState:
        # distinct buffers, not one array twice: a donated step would donate it twice
        notfinite, total = jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32)
        return ApplyIfFiniteState(notfinite, jnp.array(True), total, inner.init(params))

    def update(updates: Updates, state: ApplyIfFiniteState, params=None, **extra_args):
        check_state(state, ApplyIfFiniteState, "apply_if_finite")
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


def negated_value(tx: GradientTransformation) -> GradientTransformation:
    """``tx`` with its ``value=`` keyword negated: maximising E is minimising -E (how
    :func:`gradtx.rprop` ascends with ``"irprop+"``, whose rule reads the loss)."""

    def update(updates, state, params=None, **extra_args):
        if extra_args.get("value") is not None:
            extra_args = {**extra_args, "value": -jnp.asarray(extra_args["value"])}
        return tx.update(updates, state, params, **extra_args)

    return GradientTransformation(tx.init, update)
