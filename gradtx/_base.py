"""The protocol: what a transform is, and the few functions every transform shares.

Every transform in gradtx is a :class:`GradientTransformation`: a pair of pure
functions ``init(params) -> state`` and
``update(updates, state, params=None, **extra_args) -> (updates, state)``.
This is structurally the protocol of optax, so a gradtx transform can be used
wherever optax expects one (``optax.chain``, flax's ``TrainState``) and the other
way round.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from gradtx._trees import check_same_structure, check_shape

Params = Any
"""A pytree of arrays: the parameters being optimised."""
Updates = Any
"""A pytree of arrays with the structure of the params: gradients or updates."""
OptState = Any
"""A pytree of arrays: the state of a transform."""
Schedule = Callable[[jax.Array], jax.Array]
"""A function from the step count (an ``int32`` scalar) to a scalar value."""
Scalar = float | jax.Array
"""A hyperparameter value: a Python number or a scalar array (traced or concrete)."""
ScalarOrSchedule = Scalar | Schedule
"""A hyperparameter value, or a schedule of the step count."""


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class _Pair(NamedTuple):
    init: TransformInitFn
    update: TransformUpdateFn


class GradientTransformation(_Pair):
    r"""A pure ``(init, update)`` pair, structurally identical to optax's.

    ``init(params)`` returns the initial state; ``update(updates, state, params=None,
    **extra_args)`` returns the transformed updates and the new state. Neither mutates its
    arguments, so both can be jitted, differentiated and run under any sharding.

    **Recognised by optax as taking extra arguments.** optax's combinators
    (``optax.chain``, ``optax.MultiSteps``, ``optax.inject_hyperparams``, ...) pass
    ``update``'s extra keyword arguments (``value=loss``) only to members that are
    instances of ``optax.GradientTransformationExtraArgs``, and drop them for the others.
    A gradtx transform's ``update`` takes them, so it reports that class as its
    ``__class__`` once optax is imported (the way ``unittest.mock`` objects pass
    ``isinstance``): ``isinstance(tx, optax.GradientTransformationExtraArgs)`` is True,
    ``type(tx)`` is still this class, and gradtx never imports optax. A pair built by hand
    whose ``update`` takes no ``**kwargs`` reports ``optax.GradientTransformation``.
    (For contributors: the property below reads ``sys.modules``, so importing optax
    before or after gradtx gives the same answer; ``tests/test_values.py`` checks
    the class in a fresh process without optax, then with it. jax flattens by the real
    type, so the pytree is unaffected.)

    **A value: equal when built alike.** The transforms that gradtx's public
    constructors return compare and hash equal when built with equal arguments
    (``rmsprop(1e-3) == rmsprop(learning_rate=1e-3)``), nested ones too, and are
    pytrees with no leaves: ``jax.jit(step)(tx, params, state, grads)`` works, and a
    rebuilt-alike transform, as a plain or a static argument or under equinox's
    ``filter_jit``, does not retrace. Their hyperparameters are static: a different
    learning rate is a different transform and compiles again (the compiled step is
    the one of the transform closed over, bit for bit); to change one without
    recompiling, inject it (:func:`gradtx.inject_hyperparams`). Numbers and concrete
    arrays compare by value, functions and optax transforms by identity
    (:func:`gradtx.constructor` says how, and makes your own transforms values too).
    A pair built by hand as below compares as a tuple of its two functions.

    Attributes:
      init: ``params -> state``.
      update: ``(updates, state, params=None, **extra_args) -> (updates, state)``.

    Example:
      A transform written by hand: halve the updates and count the steps.

      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.GradientTransformation(
      ...     init=lambda params: jnp.zeros([], jnp.int32),
      ...     update=lambda updates, count, params=None: (
      ...         {k: v / 2 for k, v in updates.items()}, count + 1),
      ... )
      >>> updates, count = gradtx.chain(tx).update({"w": jnp.ones(2)}, (tx.init(None),))
      >>> print(updates["w"], count[0])
      [0.5 0.5] 1
    """

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        # What isinstance() consults besides type(): optax's class once optax is imported
        # (optax forwards extra arguments only to its ...ExtraArgs instances), else ours.
        optax = sys.modules.get("optax")
        if optax is None:
            return type(self)
        if _takes_extra_args(self):
            return optax.GradientTransformationExtraArgs
        return optax.GradientTransformation

    def __repr__(self) -> str:
        label = getattr(self.update, "label", None)  # a keyed transform: how it was built
        if label is not None and getattr(self.init, "label", None) == label:
            return f"GradientTransformation<{label}>"
        return f"GradientTransformation(init={self.init!r}, update={self.update!r})"

    def __reduce__(self) -> tuple:
        return (type(self), tuple(self))


GradientTransformationExtraArgs = GradientTransformation
"""optax's name for a transform whose ``update`` takes ``**extra_args``: every gradtx
transform does, so in gradtx the two names are one class."""


class EmptyState(NamedTuple):
    r"""The state of a transform that keeps none: an empty tuple.

    Example:
      >>> import gradtx
      >>> gradtx.scale(2.0).init({"w": 1.0})
      EmptyState()
    """


NO_PARAMS_MSG = "this transform needs the current params: call update(updates, state, params)."


def abstract_aware(init: TransformInitFn) -> TransformInitFn:
    """``init`` that also takes abstract params: given a tree holding a
    ``jax.ShapeDtypeStruct`` it returns the state's structure as ``ShapeDtypeStruct``\\ s
    (``jax.eval_shape(init, params)``: shapes, dtypes and, where the params carry one,
    shardings), allocating nothing. This is how shardings are planned before allocating.
    optax returns zero arrays there; the structure is the same."""

    @functools.wraps(init)
    def wrapped(params: Params) -> OptState:
        leaves = jax.tree.leaves(params)
        if not any(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
            return init(params)
        out = jax.eval_shape(init, params)
        if all(getattr(x, "sharding", None) is None for x in leaves):
            return out
        # the shardings that jit(init) would give: compiled (to propagate them), not run
        shardings = jax.jit(init).lower(params).compile().output_shardings
        return jax.tree.map(
            lambda o, s: jax.ShapeDtypeStruct(o.shape, o.dtype, sharding=s), out, shardings
        )

    return wrapped


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a transform that keeps no state."""
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    r"""The transform that returns the updates unchanged and keeps no state.

    Returns:
      A stateless :class:`GradientTransformation` (its state is :class:`EmptyState`).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.identity()
      >>> tx.update({"w": jnp.ones(2)}, tx.init(None))
      ({'w': Array([1., 1.], dtype=float32)}, EmptyState())
    """

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init_empty_state, update)


def _takes_extra_args(tx: Any) -> bool:
    """Whether ``tx.update`` accepts ``**extra_args`` (every gradtx transform does;
    optax's plain ``GradientTransformation`` does not, its ``...ExtraArgs`` does)."""
    try:
        params = inspect.signature(tx.update).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def update_with_extra_args(tx: Any) -> TransformUpdateFn:
    """``tx.update`` as a function that takes ``**extra_args`` whatever ``tx`` is: they are
    passed on when ``tx.update`` accepts them, and dropped for one that does not (a plain
    optax transform), as ``optax.chain`` does. Every combinator forwards through this."""
    if _takes_extra_args(tx):
        return tx.update

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return tx.update(updates, state, params)

    return update


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the largest ``int32`` instead of wrapping."""
    top = jnp.iinfo(jnp.int32).max
    return jnp.where(count < top, count + 1, top).astype(jnp.int32)


def apply_updates(params: Params, updates: Updates) -> Params:
    r"""Add the updates to the params, leaf by leaf, each leaf keeping its param's dtype.

    Formula::

        theta_t = theta_(t-1) + u_t

    .. math:: \theta_t = \theta_{t-1} + u_t

    ``None`` entries stay ``None``. The structures and each leaf's shape must match; a
    mismatch raises ``ValueError`` naming the path (optax would broadcast silently).

    Args:
      params: the params, a pytree of arrays.
      updates: a pytree of arrays with the params' structure and shapes.

    Returns:
      The new params, a pytree of the params' structure, shapes and dtypes.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> params = {"w": jnp.array([1.0, 2.0], jnp.bfloat16)}
      >>> gradtx.apply_updates(params, {"w": jnp.array([0.5, 0.5])})
      {'w': Array([1.5, 2.5], dtype=bfloat16)}
    """
    check_same_structure(params, updates, "params", "updates")
    p_leaves, treedef = jax.tree.flatten(params)
    u_leaves = treedef.flatten_up_to(updates)
    out = []
    for i, (p, u) in enumerate(zip(p_leaves, u_leaves)):
        p = jnp.asarray(p)
        check_shape(params, i, "updates", jnp.shape(u), p.shape)
        out.append((p + u).astype(p.dtype))
    return treedef.unflatten(out)
