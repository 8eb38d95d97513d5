r"""Accumulating gradients over several calls before stepping.

:class:`MultiSteps` accumulates :math:`k` micro-batch gradients and steps the wrapped
transform once (optax's ``MultiSteps``; Dragon's ``Optimizer.sum_grad``), optionally
skipping micro-batches that ``should_skip_update_fn`` rejects (:func:`skip_not_finite`).
The lighter block that only sums updates is :func:`gradtx.apply_every`.

Counters are ``int32`` scalars; the wrapped transform's state is kept untouched inside
(``inner_opt_state``), so checkpointing tools see a plain pytree of arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    abstract_aware,
    safe_increment,
    update_with_extra_args,
)
from gradtx._trees import check_same_structure, check_state, check_update_shape


def _check_like_accumulator(updates: Updates, acc: Updates) -> None:
    """The gradients have the structure and shapes of the accumulator (which ``init``
    made like the params): checked before they are added to it, where broadcasting
    would otherwise fail inside jax or, worse, succeed."""
    check_same_structure(updates, acc, "updates", "params")
    for i, (g, a) in enumerate(zip(jax.tree.leaves(updates), jax.tree.leaves(acc))):
        check_update_shape(updates, i, "params", jnp.shape(a), jnp.shape(g))


def skip_not_finite(updates: Updates, gradient_step: Any, params: Params | None) -> tuple:
    r"""Reject a micro-batch whose gradients hold a NaN or an Inf (for :class:`MultiSteps`).

    The ``should_skip_update_fn`` of ``optax.skip_not_finite``.

    Args:
      updates: the micro-batch's gradients.
      gradient_step: the real steps made so far (unused).
      params: the params (unused).

    Returns:
      ``(should_skip, {"should_skip": ..., "num_not_finite": ...})``, as optax.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> skip, info = gradtx.skip_not_finite({"w": jnp.array([1.0, jnp.inf])}, 0, None)
      >>> print(skip, info["num_not_finite"])
      True 1
    """
    del gradient_step, params
    counts = [jnp.sum(jnp.logical_not(jnp.isfinite(g))) for g in jax.tree.leaves(updates)]
    num_not_finite = jnp.sum(jnp.array(counts))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


class MultiStepsState(NamedTuple):
    r"""The state of :class:`MultiSteps` (optax's ``MultiStepsState`` layout).

    Attributes:
      mini_step: ``int32``, the micro-batches accumulated since the last real step.
      gradient_step: ``int32``, the real steps made (updates of the inner transform).
      inner_opt_state: the inner transform's state.
      acc_grads: the running sum of the micro-batch gradients, like the params.
      skip_state: what ``should_skip_update_fn`` returned last (``()`` without one).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.MultiSteps(gradtx.identity(), every_k_schedule=4).init({"w": jnp.zeros(2)})
      MultiStepsState(mini_step=Array(0, dtype=int32), gradient_step=Array(0, dtype=int32),
                      inner_opt_state=EmptyState(),
                      acc_grads={'w': Array([0., 0.], dtype=float32)}, skip_state=())
    """

    mini_step: jax.Array  # int32: micro-batches accumulated since the last real step
    gradient_step: jax.Array  # int32: real steps made (updates of the inner transform)
    inner_opt_state: OptState
    acc_grads: Updates  # the running sum of the micro-batch gradients
    skip_state: Any = ()  # what should_skip_update_fn returned last (optax's field)


def _cast_like(new: Any, old: Any) -> Any:
    """``new`` with each leaf in the dtype of ``old``'s leaf (both branches of a ``cond``
    must agree, and a state keeps its dtypes)."""
    return jax.tree.map(lambda n, o: jnp.asarray(n).astype(jnp.asarray(o).dtype), new, old)


def _checked_k(value: Any, where: str) -> Any:
    """A value of ``every_k_schedule``, refused unless a scalar integer >= 1 (-1 would flip
    the update's sign, 0 divide by zero). The shape is checked always (it is static); the
    value where it is concrete (at construction, eager steps): never a sync in a step."""
    if jnp.shape(value) != ():
        raise ValueError(
            f"Invalid every_k_schedule: its value {where} has shape {jnp.shape(value)} "
            "(must be a scalar integer >= 1)."
        )
    try:
        v = check.concrete(value)
    except ValueError:
        v = math.nan
    if v is not None and not (1 <= v < 2**31 and v == math.floor(v)):  # an int32 count
        raise ValueError(
            f"Invalid every_k_schedule: its value {where} is {value!r} (must be an integer "
            ">= 1 at every step)."
        )
    return value


def _every_k(every_k_schedule: Any) -> Callable[[jax.Array], Any]:
    if callable(every_k_schedule):
        _checked_k(every_k_schedule(jnp.zeros([], jnp.int32)), "at gradient_step 0")
        return every_k_schedule
    k = check.steps("every_k_schedule", every_k_schedule, low=1)  # as a schedule's step counts
    return lambda step: k


class MultiSteps:
    r"""Accumulate the gradients of :math:`k` micro-batches, then make one step.

    With :math:`k` = ``every_k_schedule(gradient_step)`` (an ``int`` or a function of
    the number of real steps made) and :math:`g_1, \dots, g_k` the gradients of the
    micro-batches since the last step, the :math:`k`-th call passes

    .. math::
        \bar g = \tfrac1k \textstyle\sum_i g_i \ (\texttt{use_grad_mean=True}) \quad\text{or}
        \quad \bar g = \textstyle\sum_i g_i \ (\texttt{use_grad_mean=False})

    to ``transform`` and returns its update; the other calls return zeros and leave the
    inner state alone. ``reduce="mean"``/``"sum"`` (keyword) is another spelling of
    ``use_grad_mean``; ``"sum"`` is Dragon's ``Optimizer.sum_grad()`` (and torch's habit
    of calling ``backward`` :math:`k` times before ``step``).

    ``should_skip_update_fn(updates, gradient_step, params) -> (skip, skip_state)``
    (e.g. :func:`skip_not_finite`) rejects a micro-batch: when ``skip`` is True the call
    returns zeros and the state is unchanged but for ``skip_state``, as if the call had
    not happened (optax's).

    Arguments and state layout are ``optax.MultiSteps``'s, with these differences: the
    accumulator sums and the mean divides once at the step (optax keeps a running mean;
    the two agree to rounding); its dtype is each gradient's own unless
    ``accumulator_dtype`` is given (optax: float32; a real dtype, which complex gradients
    widen to the complex dtype of its precision rather than lose their imaginary part);
    a schedule's value must be an integer >= 1, checked at construction (its value at
    step 0) and at every eager step (optax divides by 0 or flips the sign); the inner
    update runs only on the :math:`k`-th call (``lax.cond``), where optax runs it every
    call and masks the result,
    so a NaN in a discarded inner update cannot leak through; any mix of float32,
    bfloat16 and float16 params and gradients works, the inner state keeping its dtypes.

    ``MultiSteps(...)`` has ``init`` and ``update`` and can be used wherever a transform
    is expected; :meth:`gradient_transformation` returns the plain pair.

    Args:
      transform: the transform stepped once per :math:`k` calls.
      every_k_schedule: :math:`k`, an integer ``>= 1`` (an integer-valued float or array too) or a
        function of ``gradient_step``.
      use_grad_mean: pass the mean (True) or the sum (False) of the :math:`k` gradients.
      should_skip_update_fn: ``(updates, gradient_step, params) -> (skip, skip_state)``,
        e.g. :func:`skip_not_finite`; ``None``: every micro-batch counts.
      accumulator_dtype: the dtype of the running sum (``None``: each gradient's).
      reduce: ``"mean"`` or ``"sum"``, another spelling of ``use_grad_mean``.

    Example:
      Four micro-batches per step of RMSprop:

      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.MultiSteps(gradtx.rmsprop(1e-2), every_k_schedule=4)
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> for g in (1.0, 2.0, 3.0, 4.0):
      ...     updates, state = tx.update({"w": jnp.full(2, g)}, state, params)
      >>> print(int(state.gradient_step), [round(float(u), 4) for u in updates["w"]])
      1 [-0.1, -0.1]
    """

    def __init__(
        self,
        transform: Any,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable[..., tuple[Any, Any]] | None = None,
        accumulator_dtype: Any | None = None,
        *,
        reduce: str | None = None,
    ):
        check.flag("use_grad_mean", use_grad_mean)
        if reduce is not None:
            check.one_of("reduce", reduce, ("mean", "sum"))
            use_grad_mean = reduce == "mean"
        if should_skip_update_fn is not None and not callable(should_skip_update_fn):
            raise TypeError(
                f"should_skip_update_fn must be a function, got {should_skip_update_fn!r}"
            )
        self._inner = transform
        self._every_k = _every_k(every_k_schedule)
        self._mean = bool(use_grad_mean)
        self._skip = should_skip_update_fn
        self._acc_dtype = check.accumulator_dtype("accumulator_dtype", accumulator_dtype)
        self._inner_update = update_with_extra_args(transform)
        self.init = abstract_aware(self._init)

    @property
    def inner_opt(self) -> Any:
        return self._inner

    def _init(self, params: Params) -> MultiStepsState:
        def zeros(p):
            p = jnp.asarray(p)
            return jnp.zeros(p.shape, check.accumulator_for(self._acc_dtype, p.dtype))

        zero = jnp.zeros([], jnp.int32)
        inner = self._inner.init(params)
        skip_state = ()
        if self._skip is not None:  # its structure, as optax
            skip_state = jax.tree.map(
                jnp.zeros_like, jax.eval_shape(self._skip, params, zero, params)[1]
            )
        # two counters in two buffers, not one array twice: a donated step would donate it
        # twice ("Attempt to donate the same buffer twice")
        gradient_step = jnp.zeros([], jnp.int32)
        acc = jax.tree.map(zeros, params)
        return MultiStepsState(zero, gradient_step, inner, acc, skip_state)

    def _accumulate(self, updates, state, params, extra_args):
        step = state.gradient_step
        where = "at gradient_step " + (
            "(traced)" if isinstance(step, jax.core.Tracer) else str(step)
        )
        k = jnp.asarray(_checked_k(self._every_k(step), where), jnp.int32)
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
            inner_state = _cast_like(inner_state, state.inner_opt_state)
            return new_updates, inner_state, jax.tree.map(jnp.zeros_like, acc)

        out = jax.eval_shape(step, None)[0]

        def accumulate(_):
            zeros = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), out)
            return zeros, state.inner_opt_state, acc

        new_updates, inner_state, acc = jax.lax.cond(emit, step, accumulate, None)
        mini_step = jnp.where(emit, 0, state.mini_step + 1).astype(jnp.int32)
        gradient_step = jnp.where(
            emit, safe_increment(state.gradient_step), state.gradient_step
        ).astype(jnp.int32)
        return new_updates, (mini_step, gradient_step, inner_state, acc)

    def update(
        self,
        updates: Updates,
        state: MultiStepsState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, MultiStepsState]:
        check_state(state, MultiStepsState, "MultiSteps")
        _check_like_accumulator(updates, state.acc_grads)
        if self._skip is None:
            new_updates, fields = self._accumulate(updates, state, params, extra_args)
            return new_updates, MultiStepsState(*fields, state.skip_state)
        should_skip, skip_state = self._skip(updates, state.gradient_step, params)

        def run(_):
            return self._accumulate(updates, state, params, extra_args)

        out = jax.eval_shape(run, None)[0]

        def skip(_):
            zeros = jax.tree.map(lambda o: jnp.zeros(o.shape, o.dtype), out)
            return zeros, tuple(state[:4])

        new_updates, fields = jax.lax.cond(should_skip, skip, run, None)
        return new_updates, MultiStepsState(*fields, skip_state)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the last ``update`` made a real step (``mini_step`` is back at 0)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        return GradientTransformation(self.init, self.update)
