r"""Wrappers: a transform around a transform.

* :func:`inject_hyperparams` makes hyperparameters state: constants, schedules, or values
  the user replaces between steps, all without recompiling (optax's
  ``inject_hyperparams``; torch's ``param_groups[i]["lr"] = ...`` and ``lr_scheduler``).
* :class:`MultiSteps` accumulates :math:`k` micro-batch gradients and steps once
  (optax's ``MultiSteps``; Dragon's ``Optimizer.sum_grad``).
* :func:`apply_if_finite` skips steps whose gradients hold a NaN or an Inf (optax's
  ``apply_if_finite``).

Each keeps its own counters as ``int32`` scalars and the wrapped transform's state
untouched inside (``inner_state`` / ``inner_opt_state``), so checkpointing tools see a
plain pytree of arrays.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    safe_increment,
    update_with_extra_args,
)

# --------------------------------------------------------------------------------------
# inject_hyperparams
# --------------------------------------------------------------------------------------


class InjectHyperparamsState(NamedTuple):
    """optax's ``InjectHyperparamsState`` layout."""

    count: jax.Array  # int32 scalar: updates made so far (the schedules' argument)
    hyperparams: dict[str, jax.Array]  # the value each hyperparameter had at the last update
    inner_state: OptState


def _is_numeric(value: Any) -> bool:
    """A number or a numeric array (bools are flags, not hyperparameters to inject)."""
    if isinstance(value, bool) or not isinstance(
        value, (numbers.Number, np.ndarray, np.generic, jax.Array)
    ):
        return False
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    return dtype.kind in "iufc"


def _float_dtype(params: Params) -> Any:
    """The widest real floating dtype among the params' leaves (complex counts as its
    real part), or the default float dtype when there is none: optax's choice."""
    found = []
    for leaf in jax.tree.leaves(params):
        dt = jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
        if jnp.issubdtype(dt, jnp.complexfloating):
            dt = jnp.finfo(dt).dtype
        if jnp.issubdtype(dt, jnp.floating):
            found.append(dt)
    return jnp.result_type(*found) if found else jnp.result_type(float)


def _as_hyperparam(value: Any, dtype: Any) -> jax.Array:
    """A numeric hyperparameter as an array: floating values in ``dtype``, others as is."""
    arr = jnp.asarray(value)
    return arr.astype(dtype) if jnp.issubdtype(arr.dtype, jnp.floating) else arr


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any | None = None,
) -> Callable[..., GradientTransformation]:
    r"""Make the numeric hyperparameters of ``inner_factory`` part of the state.

    ``inject_hyperparams(factory)(**kwargs)`` builds a transform whose state is
    :class:`InjectHyperparamsState` ``(count, hyperparams, inner_state)``. Each argument
    of ``factory`` is either

    * a number (or array): stored in ``state.hyperparams[name]`` as an array, in
      ``hyperparam_dtype`` (default: the widest floating dtype of the params, as
      optax); a user may replace it between steps, see :func:`set_hyperparams`;
    * a schedule (any callable, e.g. any optax or :mod:`gradtx.schedules` schedule):
      evaluated at ``state.count`` (0 on the first update) before every update, the
      value recorded in ``state.hyperparams[name]`` (replacing it there has no effect);
    * a bool, a tuple, ``None``, a string or a name in ``static_args``: passed as is.

    Every update rebuilds the inner transform from these values (at trace time: in a
    jitted step the values are traced arrays) and applies it to ``inner_state``, so
    changing a value neither changes the state's structure nor recompiles. Numbers and
    behaviour are optax's ``inject_hyperparams`` (without its stateful schedules).

    What a hyperparameter means over time is the inner transform's business:
    ``rprop``'s ``learning_rate`` is only the *initial step size*, read once by ``init``
    to seed :math:`\Delta_0`, exactly as ``torch.optim.Rprop`` reads ``lr`` only when it
    creates a parameter's state (its first step). So
    ``inject_hyperparams(gradtx.rprop)(learning_rate=schedule)`` seeds every step size
    with ``schedule(0)``; later values are recorded in ``state.hyperparams`` but move
    nothing, as a torch ``lr_scheduler`` attached to ``Rprop`` moves nothing. Rprop's
    ``etas`` and ``step_sizes`` are pairs, hence static; inject
    :func:`gradtx.scale_by_rprop` to schedule ``eta_minus``, ``min_step_size``, ....
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not static.issubset(signature.parameters):
        raise ValueError(
            f"Invalid static_args: {sorted(static)!r} (must name parameters of "
            f"{getattr(inner_factory, '__name__', inner_factory)}: "
            f"{list(signature.parameters)})."
        )

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        scheduled, numeric, fixed = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static or isinstance(value, bool):
                fixed[name] = value
            elif callable(value):
                scheduled[name] = value
            elif _is_numeric(value):
                numeric[name] = value
            else:
                fixed[name] = value

        def build(hyperparams):
            merged = {**fixed, **hyperparams}
            # in the signature's order, so that *args and **kwargs parameters pass through
            call = inspect.BoundArguments(signature, {k: merged[k] for k in bound.arguments})
            return inner_factory(*call.args, **call.kwargs)

        # Validate once, with the values as given (schedules pass unchecked).
        build({**numeric, **scheduled})

        def init(params: Params) -> InjectHyperparamsState:
            dtype = hyperparam_dtype or _float_dtype(params)
            count = jnp.zeros([], jnp.int32)
            hyperparams = {k: _as_hyperparam(v, dtype) for k, v in numeric.items()}
            hyperparams.update({k: _as_hyperparam(f(count), dtype) for k, f in scheduled.items()})
            return InjectHyperparamsState(count, hyperparams, build(hyperparams).init(params))

        def update(updates: Updates, state, params: Params | None = None, **extra_args):
            # the gradients have the params' dtypes: the same choice as at init, even when
            # a user replaced a value with a Python number
            dtype = hyperparam_dtype or _float_dtype(updates)
            hyperparams = {k: _as_hyperparam(v, dtype) for k, v in state.hyperparams.items()}
            hyperparams.update(
                {k: _as_hyperparam(f(state.count), dtype) for k, f in scheduled.items()}
            )
            inner_update = update_with_extra_args(build(hyperparams))
            updates, inner_state = inner_update(updates, state.inner_state, params, **extra_args)
            return updates, InjectHyperparamsState(
                safe_increment(state.count), hyperparams, inner_state
            )

        return GradientTransformation(init, update)

    return wrapped


def set_hyperparams(state: InjectHyperparamsState, **values: Any) -> InjectHyperparamsState:
    """A copy of ``state`` with hyperparameters replaced, each cast to the dtype and shape
    it has in the state, so that a jitted step taking the new state does not retrace.

    ``state = set_hyperparams(state, learning_rate=1e-3)`` is torch's
    ``for g in opt.param_groups: g["lr"] = 1e-3``. Unknown names raise ``ValueError``.
    A scheduled hyperparameter is overwritten by its schedule at the next update.
    """
    unknown = sorted(set(values) - set(state.hyperparams))
    if unknown:
        raise ValueError(
            f"Invalid hyperparameter name(s) {unknown}: the state holds "
            f"{sorted(state.hyperparams)}."
        )
    new = dict(state.hyperparams)
    for name, value in values.items():
        old = state.hyperparams[name]
        new[name] = jnp.broadcast_to(jnp.asarray(value, old.dtype), old.shape)
    return state._replace(hyperparams=new)


# --------------------------------------------------------------------------------------
# apply_if_finite
# --------------------------------------------------------------------------------------


class ApplyIfFiniteState(NamedTuple):
    """optax's ``ApplyIfFiniteState`` layout."""

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

    .. math::
        n_t = \begin{cases} 0 & g_t \text{ finite} \\ n_{t-1} + 1 & \text{otherwise}
        \end{cases}, \qquad
        (u_t, s_t) = \begin{cases} \mathrm{inner}(g_t, s_{t-1}) & g_t \text{ finite or }
        n_t > N \\ (0, s_{t-1}) & \text{otherwise.} \end{cases}

    Same arguments, state layout (:class:`ApplyIfFiniteState`) and behaviour as
    ``optax.apply_if_finite``. ``max_consecutive_errors`` is an ``int >= 0``.
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
        zero = jnp.zeros([], jnp.int32)
        return ApplyIfFiniteState(zero, jnp.array(True), zero, inner.init(params))

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

        zero = jnp.zeros([], jnp.int32)
        return MultiStepsState(zero, zero, self._inner.init(params), jax.tree.map(zeros, params))

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
