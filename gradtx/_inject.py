r"""``inject_hyperparams``: hyperparameters as state, so that constants, schedules and
values the user replaces between steps all run without recompiling (optax's
``inject_hyperparams``; torch's ``param_groups[i]["lr"] = ...`` and ``lr_scheduler``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
from gradtx._leafwise import concrete_arrays
from gradtx._trees import check_names, check_state


class InjectHyperparamsState(NamedTuple):
    """The state of :func:`inject_hyperparams` (optax's ``InjectHyperparamsState`` layout).

    Attributes:
      count: an ``int32`` scalar, the updates made so far (the schedules' argument).
      hyperparams: ``{name: array}``, the value each hyperparameter had at the last update.
      inner_state: the inner transform's state.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(learning_rate=0.1)
      >>> tx.init({"w": jnp.zeros(2)})
      InjectHyperparamsState(count=Array(0, dtype=int32),
                             hyperparams={'learning_rate': Array(0.1, dtype=float32)},
                             inner_state=EmptyState())
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    inner_state: OptState


def _is_key(value: Any) -> bool:
    """A typed PRNG key array (``jax.random.key``): passed through, never cast."""
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _is_numeric(value: Any) -> bool:
    """What goes into ``state.hyperparams`` (as optax, every int, float and array): a number,
    a numeric array (bfloat16 too, NumPy kind 'V') or a PRNG key; not a bool (a flag)."""
    if check.is_python_number(value) or isinstance(value, complex):
        return True
    if not isinstance(value, np.ndarray | np.generic | jax.Array):
        return False
    return _is_key(value) or jnp.issubdtype(value.dtype, jnp.number)


def _float_dtype(params: Params) -> Any:
    """The params' widest real float dtype (complex: its real part), else the default (optax)."""
    found = []
    for leaf in jax.tree.leaves(params):
        dt = jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
        if jnp.issubdtype(dt, jnp.complexfloating):
            dt = jnp.finfo(dt).dtype
        if jnp.issubdtype(dt, jnp.floating):
            found.append(dt)
    return jnp.result_type(*found) if found else jnp.result_type(float)


def _as_hyperparam(value: Any, dtype: Any) -> jax.Array:
    """As optax's ``_convert_floats``: a strongly typed JAX array or a key as is, other
    floating values cast to ``dtype``, integers as integers."""
    if _is_key(value) or (isinstance(value, jax.Array) and not value.weak_type):
        return value
    arr = jnp.asarray(value)
    return arr.astype(dtype) if jnp.issubdtype(arr.dtype, jnp.floating) else arr


def _own(value: Any) -> Any:
    """A concrete array in a buffer of its own: one passed for two names (or transforms)
    would sit in the state twice, and a donated step refuses to donate a buffer twice."""
    if not isinstance(value, jax.Array) or isinstance(value, jax.core.Tracer):
        return value
    if _is_key(value):  # a key's own copy() fails inside a trace (jax.jit(init))
        data = jax.random.key_data(value).copy()
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    return value.copy()


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

    What a value means over time is the inner transform's business: ``rprop``'s
    ``learning_rate`` is only the *initial step size*, read by ``init`` to seed
    :math:`\Delta_0` (as ``torch.optim.Rprop`` reads ``lr`` only at its first step): a
    schedule seeds it with ``schedule(0)``; later values are recorded but move nothing (as
    a torch ``lr_scheduler`` on ``Rprop``). Rprop's ``etas`` and ``step_sizes`` are pairs,
    hence static; inject :func:`gradtx.scale_by_rprop` to schedule ``eta_minus``, ....

    Args:
      inner_factory: a function returning a transform, e.g. :func:`gradtx.rmsprop`.
      static_args: names of arguments never to inject (passed as given).
      hyperparam_dtype: the dtype of the injected floating values (``None``: the
        widest floating dtype of the params); a real floating dtype (an integer one
        would truncate them, and is refused).

    Returns:
      A function with ``inner_factory``'s signature that returns a
      :class:`~gradtx.GradientTransformation` whose state is an
      :class:`InjectHyperparamsState`.

    Example:
      A learning rate that follows a schedule, and a momentum changed by hand:

      >>> import jax.numpy as jnp, gradtx
      >>> schedule = gradtx.linear_schedule(0.1, 0.0, transition_steps=10)
      >>> tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=schedule, momentum=0.9)
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> state = gradtx.set_hyperparams(state, momentum=0.5)
      >>> for _ in range(3):
      ...     _, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> hp = state.hyperparams  # learning rate: the schedule's value at the last update
      >>> print(round(float(hp["learning_rate"]), 4), float(hp["momentum"]))
      0.08 0.5
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not static.issubset(signature.parameters):
        raise ValueError(
            f"Invalid static_args: {sorted(static)!r} (must name parameters of "
            f"{getattr(inner_factory, '__name__', inner_factory)}: "
            f"{list(signature.parameters)})."
        )

    hyperparam_dtype = check.float_dtype("hyperparam_dtype", hyperparam_dtype)

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            inner_factory(*args, **kwargs)  # its own message (rmsprop(lr=) names learning_rate)
            raise
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

        def inner_update(hyperparams, updates, inner_state, params, extra_args):
            with check.trusted():  # checked at construction, init and set_hyperparams
                inner = update_with_extra_args(build(hyperparams))
            return inner(updates, inner_state, params, **extra_args)

        # An eager update runs the inner transform as one program that takes the values as
        # arguments, compiled once: built afresh at each step, it would compile anew.
        compiled_update = jax.jit(inner_update)

        @abstract_aware
        def init(params: Params) -> InjectHyperparamsState:
            dtype = hyperparam_dtype or _float_dtype(params)
            count = jnp.zeros([], jnp.int32)
            hyperparams = {k: _as_hyperparam(v, dtype) for k, v in numeric.items()}
            hyperparams.update({k: _as_hyperparam(f(count), dtype) for k, f in scheduled.items()})
            inner = build(hyperparams).init(params)
            return InjectHyperparamsState(
                count, {k: _own(v) for k, v in hyperparams.items()}, inner
            )

        def update(updates: Updates, state, params: Params | None = None, **extra_args):
            check_state(state, InjectHyperparamsState, "inject_hyperparams")
            check_names(state.hyperparams, {*numeric, *scheduled}, "inject_hyperparams")
            # the gradients have the params' dtypes: the same choice as at init, even when
            # a user replaced a value with a Python number
            dtype = hyperparam_dtype or _float_dtype(updates)
            hyperparams = {k: _as_hyperparam(v, dtype) for k, v in state.hyperparams.items()}
            now = {k: _as_hyperparam(f(state.count), dtype) for k, f in scheduled.items()}
            hyperparams.update(now)
            concrete = {k for k, v in now.items() if not isinstance(v, jax.core.Tracer)}
            if concrete:  # an eager step: the schedules' values checked as at construction
                try:
                    build(hyperparams)
                except (TypeError, ValueError) as e:
                    at = "?" if isinstance(state.count, jax.core.Tracer) else int(state.count)
                    raise type(e)(
                        f"inject_hyperparams: the schedule given for {sorted(concrete)} "
                        f"gave an invalid value at step {at}: {e}"
                    ) from None
            args = (hyperparams, updates, state.inner_state, params, extra_args)
            updates, inner_state = (compiled_update if concrete_arrays(args) else inner_update)(
                *args
            )
            return updates, InjectHyperparamsState(
                safe_increment(state.count), hyperparams, inner_state
            )

        return GradientTransformation(init, update)

    return wrapped


def _check_injected(state: Any) -> None:
    """Refuse a state that is not an :class:`InjectHyperparamsState`, naming one inside it."""
    if isinstance(state, InjectHyperparamsState) or (
        hasattr(state, "hyperparams") and hasattr(state, "_replace")  # optax's own state
    ):
        return
    found = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(
            state, is_leaf=lambda x: isinstance(x, InjectHyperparamsState)
        )[0]
        if isinstance(leaf, InjectHyperparamsState)
    ]
    where = (
        f"; it holds one at state{found[0]}: pass that one and put the result back"
        if found
        else "; build the transform with gradtx.inject_hyperparams(factory)(...)"
    )
    raise TypeError(
        f"set_hyperparams needs the state of an inject_hyperparams transform "
        f"(InjectHyperparamsState), got a {type(state).__name__}{where}."
    )


def set_hyperparams(state: InjectHyperparamsState, **values: Any) -> InjectHyperparamsState:
    r"""A copy of ``state`` with some hyperparameters replaced, without recompiling.

    Each value is cast to the dtype and shape it has in the state, so a jitted step taking
    the new state does not retrace. ``state = set_hyperparams(state, learning_rate=1e-3)``
    is torch's ``for g in opt.param_groups: g["lr"] = 1e-3``. Unknown names raise
    ``ValueError``, as does a concrete value gradtx's blocks refuse under that name
    (``learning_rate=-5.0``). A Python number put in ``state.hyperparams`` directly (optax's
    idiom) is accepted. A scheduled value is overwritten by its schedule at the next update.

    Args:
      state: the state of a transform built by :func:`inject_hyperparams`.
      **values: ``name=value`` for each hyperparameter to replace.

    Returns:
      A new :class:`InjectHyperparamsState`; ``state`` is unchanged.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=1e-2)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> state = gradtx.set_hyperparams(state, learning_rate=1e-3)
      >>> state.hyperparams["learning_rate"]
      Array(0.001, dtype=float32)
    """
    _check_injected(state)
    unknown = sorted(set(values) - set(state.hyperparams))
    if unknown:
        raise ValueError(
            f"Invalid hyperparameter name(s) {unknown}: the state holds "
            f"{sorted(state.hyperparams)}."
        )
    new = dict(state.hyperparams)
    for name, value in values.items():
        check.hyperparameter(name, value)
        old = state.hyperparams[name]
        if _is_key(old) or _is_key(value):
            new[name] = _own(value)
            continue
        if not hasattr(old, "dtype"):  # a Python number a user put in the dict (optax's
            new[name] = jnp.asarray(value)  # idiom): weakly typed, cast at the next update
            continue
        new[name] = _own(jnp.broadcast_to(jnp.asarray(value, old.dtype), old.shape))
    return state._replace(hyperparams=new)
