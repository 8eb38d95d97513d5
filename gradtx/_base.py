"""The protocol, and the one place where per-leaf math is lifted to pytrees.

Every transform in gradtx is a :class:`GradientTransformation`: a pair of pure
functions ``init(params) -> state`` and
``update(updates, state, params=None, **extra_args) -> (updates, state)``.
This is structurally the protocol of optax, so a gradtx transform can be used
wherever optax expects one (``optax.chain``, flax's ``TrainState``) and the other
way round.

Most transforms are element-wise: their rule is a small function of one array
(the gradient of one parameter) and of that array's slice of the state.
:func:`leafwise` turns such a rule into a transform. It owns, once for all
transforms:

* mapping over the pytree (``None`` entries are empty subtrees and carry no state),
* the state layout: a ``NamedTuple`` whose fields are trees mirroring the params
  (optax's and checkpointing tools' layout), plus an optional ``int32`` step count,
* checking that updates, params and state have the same tree structure and shapes,
  naming the first path that differs,
* complex parameters, viewed as pairs of reals the way ``torch.optim`` does,
* dtypes: an update leaves with its gradient's dtype, a state leaf keeps its own,
* placement: a state leaf of its param's shape is sharded like the param, whether
  ``init`` runs eagerly or under ``jax.jit`` (see :func:`_placed_like`),
* forwarding of extra keyword arguments (``value=loss``, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.shard_alike import shard_alike

Params = Any
"""A pytree of arrays: the parameters being optimised."""
Updates = Any
"""A pytree of arrays with the structure of the params: gradients or updates."""
OptState = Any
"""A pytree of arrays: the state of a transform."""
Schedule = Callable[[jax.Array], jax.Array]
"""A function from the step count (an ``int32`` scalar) to a scalar value."""
ScalarOrSchedule = float | jax.Array | Schedule


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class GradientTransformation(NamedTuple):
    """A pure ``(init, update)`` pair, structurally identical to optax's.

    ``init(params)`` returns the initial state; ``update(updates, state, params=None,
    **extra_args)`` returns the transformed updates and the new state. Neither
    mutates its arguments.
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a transform that keeps none."""


NO_PARAMS_MSG = "this transform needs the current params: call update(updates, state, params)."


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a transform that keeps no state."""
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    """The transform that returns the updates unchanged and keeps no state."""

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
    """Return ``params + updates``, leaf by leaf, each leaf keeping its param's dtype.

    ``None`` entries stay ``None``. The structures must match; a mismatch names the path.
    """
    check_same_structure(params, updates, "params", "updates")

    def add(p, u):
        p = jnp.asarray(p)
        return (p + u).astype(p.dtype)

    return jax.tree.map(add, params, updates)


# --------------------------------------------------------------------------------------
# Tree structure checks
# --------------------------------------------------------------------------------------


def _paths(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    return [(jax.tree_util.keystr(path) or "<root>", leaf) for path, leaf in flat]


def leaf_paths(tree: Any) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in flat]


def check_same_structure(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` naming the first path where two trees' structures differ.

    Runs in Python at trace time only: it costs nothing inside a compiled step.
    """
    if jax.tree.structure(a) == jax.tree.structure(b):
        return
    pa, pb = _paths(a), _paths(b)
    keys_a, keys_b = [k for k, _ in pa], [k for k, _ in pb]
    set_b = set(keys_b)
    for k in keys_a:
        if k not in set_b:
            raise ValueError(f"{name_a} has an entry at path {k} that {name_b} lacks.")
    set_a = set(keys_a)
    for k in keys_b:
        if k not in set_a:
            raise ValueError(f"{name_b} has an entry at path {k} that {name_a} lacks.")
    for (k, la), (_, lb) in zip(pa, pb):
        if (la is None) != (lb is None):
            which, other = (name_a, name_b) if la is None else (name_b, name_a)
            raise ValueError(f"{which} is None at path {k} where {other} has an array.")
    raise ValueError(
        f"{name_a} and {name_b} have the same paths but different container types: "
        f"{jax.tree.structure(a)} vs {jax.tree.structure(b)}."
    )


def _check_shapes(updates, i, g, p, s, names) -> None:
    """Shapes of leaf ``i``: the param's must equal the update's, each state leaf's the
    update's (in real view for complex leaves). Trace-time Python only."""
    want = as_real(g).shape if jnp.iscomplexobj(g) else g.shape
    bad = [("params", p.shape, g.shape)] if p is not None and p.shape != g.shape else []
    bad += [(f"state.{n}", x.shape, want) for n, x in zip(names, s) if x.shape != want]
    if bad:
        what, got, expected = bad[0]
        path = leaf_paths(updates)[i]
        raise ValueError(f"{what} at path {path} has shape {got}, expected {expected}.")


# --------------------------------------------------------------------------------------
# Complex numbers as pairs of reals (torch.optim's convention: view_as_real)
# --------------------------------------------------------------------------------------


def as_real(x: jax.Array) -> jax.Array:
    """A complex array as a real one with a trailing axis of 2 (re, im); reals unchanged."""
    if jnp.iscomplexobj(x):
        return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    return x


def _as_complex(x: jax.Array, dtype: Any) -> jax.Array:
    return jax.lax.complex(x[..., 0], x[..., 1]).astype(dtype)


def _placed_like(p: jax.Array, s: jax.Array) -> jax.Array:
    """State leaf ``s`` with param ``p``'s sharding, when ``s`` has ``p``'s shape (for a
    complex ``p``: its real view's, the sharding extended over the trailing axis).

    A concrete ``p`` (eager ``init``, or params closed over by a jitted function) gives
    its sharding directly: ``s`` is moved there (a ``jnp.zeros(p.shape)`` would land on
    the default device), or constrained to it when ``s`` is traced (``init_leaf`` closed
    over a traced hyperparameter). A traced ``p`` (``jax.jit(init)``) has no sharding
    yet: ``shard_alike`` asks sharding propagation to give ``s`` the one ``p`` will have,
    and with ``Explicit`` mesh axes the sharding of ``p``'s type is given to ``s``'s.
    Without this, the state of FSDP-sharded params comes out of a jitted ``init``
    replicated or on one device, as optax's does. On one device none of it costs
    anything: nothing is moved, and ``shard_alike`` leaves no trace in the program.
    """
    complex_p = jnp.iscomplexobj(p)
    if s.shape != ((*p.shape, 2) if complex_p else p.shape):
        return s
    if isinstance(p, jax.core.Tracer):
        p = as_real(p)
        want = jax.typeof(p).sharding
        if not want.mesh.empty and jax.typeof(s).sharding != want:
            s = jax.sharding.reshard(s, want)  # a mesh with Explicit axes: in the type
        return shard_alike(p, s)[1]
    sharding = getattr(p, "sharding", None)
    if sharding is None or (len(sharding.device_set) == 1 and isinstance(s, jax.core.Tracer)):
        return s
    if complex_p and isinstance(sharding, jax.sharding.NamedSharding):
        sharding = sharding.update(spec=(*sharding.spec, *[None] * (s.ndim - len(sharding.spec))))
    elif complex_p and not isinstance(sharding, jax.sharding.SingleDeviceSharding):
        return s  # no rule to extend it over the trailing axis
    if isinstance(s, jax.core.Tracer):
        return jax.lax.with_sharding_constraint(s, sharding)
    if s.sharding.is_equivalent_to(sharding, s.ndim):
        return s
    return jax.device_put(s, sharding)


def _columns(treedef: Any, per_leaf: list[tuple], n_fields: int) -> list[Any]:
    """Transpose per-leaf state tuples into one tree per state field."""
    if not per_leaf:
        return [treedef.unflatten([]) for _ in range(n_fields)]
    return [treedef.unflatten(list(column)) for column in zip(*per_leaf)]


# --------------------------------------------------------------------------------------
# The lifting helper
# --------------------------------------------------------------------------------------


def leafwise(
    update_leaf: Callable[..., tuple[jax.Array, tuple]],
    *,
    state: type[NamedTuple] = EmptyState,
    init_leaf: Callable[[jax.Array], tuple] | None = None,
    per_step: Callable[..., dict[str, Any]] | None = None,
    with_params: bool = False,
    extra_args: Sequence[str] = (),
) -> GradientTransformation:
    """Lift the rule for one array to a transform over pytrees.

    Args:
      update_leaf: ``update_leaf(g, *s, **kw) -> (u, new_s)``: the rule for one leaf.
        ``g`` is the incoming update of that leaf, ``s`` its state arrays (one per
        tree field of ``state``, in order), ``u`` the outgoing update and ``new_s``
        a tuple of the new state arrays. ``kw`` holds ``p=`` (the param) when
        ``with_params``, the values returned by ``per_step``, and the requested
        ``extra_args``.
      state: the ``NamedTuple`` type of the state. Its fields are trees that mirror
        the params; when ``per_step`` is given its first field must be ``count``, an
        ``int32`` scalar counting the updates made so far.
      init_leaf: ``init_leaf(p) -> s``: the initial state arrays of one param.
      per_step: ``per_step(count, **extra) -> dict``: scalars computed once per update
        from the step count before it is incremented (a scheduled learning rate, a bias
        correction), passed to every ``update_leaf`` call as keyword arguments.
      with_params: whether ``update_leaf`` needs the param (``p=``); ``update`` then
        raises ``ValueError`` when called without params.
      extra_args: names of keyword arguments of ``update`` (e.g. ``"value"``) that the
        rule needs; they are passed to ``per_step`` and to ``update_leaf``.

    Complex leaves are handed to ``update_leaf`` and ``init_leaf`` as real arrays with
    a trailing axis of 2 (real and imaginary part), as ``torch.optim`` does with
    ``view_as_real``; their state is stored in that real form, and their update is
    returned complex again.
    """
    fields = state._fields
    counted = per_step is not None
    if counted and (not fields or fields[0] != "count"):
        raise TypeError(f"{state.__name__} must start with a 'count' field when per_step is set")
    tree_fields = fields[1:] if counted else fields
    if tree_fields and init_leaf is None:
        raise TypeError(f"{state.__name__} has fields {tree_fields}: init_leaf is required")

    def init(params: Params) -> NamedTuple:
        leaves, treedef = jax.tree.flatten(params)
        per_leaf = []
        if tree_fields:
            for p in leaves:
                p = jnp.asarray(p)
                per_leaf.append(tuple(_placed_like(p, s) for s in init_leaf(as_real(p))))
        columns = _columns(treedef, per_leaf, len(tree_fields))
        return state(jnp.zeros([], jnp.int32), *columns) if counted else state(*columns)

    def update(updates: Updates, opt_state: NamedTuple, params: Params | None = None, **extra):
        missing = [name for name in extra_args if name not in extra]
        if missing:
            raise TypeError(
                f"this transform needs the keyword argument(s) {missing} in update(); "
                f"for example update(grads, state, params, {missing[0]}=...)."
            )
        if with_params and params is None:
            raise ValueError(NO_PARAMS_MSG)
        state_trees = tuple(opt_state)[1:] if counted else tuple(opt_state)
        for name, tree in zip(tree_fields, state_trees):
            check_same_structure(updates, tree, "updates", f"state.{name}")
        if params is not None:
            check_same_structure(updates, params, "updates", "params")

        g_leaves, treedef = jax.tree.flatten(updates)
        s_leaves = [treedef.flatten_up_to(tree) for tree in state_trees]
        p_leaves = treedef.flatten_up_to(params) if params is not None else None
        # Under a trace (jit, vmap, grad), the rule goes through a nested jit: it is then
        # traced once per distinct leaf signature (shape, dtype), and the other leaves of
        # that signature reuse the trace. XLA inlines the call, so the compiled step is
        # the same; what shrinks is the Python tracing and lowering, which grew with the
        # leaf count (1,000 leaves, donated rprop step: 2.7 s -> 0.7 s of its compile
        # time; see benchmarks/). Eagerly, the rule runs op by op as written.
        kw = {name: extra[name] for name in extra_args}
        if counted:
            kw.update(per_step(opt_state[0], **kw))
        leaves = jax.tree.leaves((updates, opt_state, params, kw))
        traced = any(isinstance(x, jax.core.Tracer) for x in leaves)
        arrays = all(isinstance(x, (jax.Array, np.ndarray, np.generic, int, float)) for x in leaves)
        rule = jax.jit(update_leaf) if traced and arrays else update_leaf

        out_u, out_s = [], []
        for i, g in enumerate(g_leaves):
            g = jnp.asarray(g)
            s = tuple(column[i] for column in s_leaves)
            p = jnp.asarray(p_leaves[i]) if p_leaves is not None else None
            _check_shapes(updates, i, g, p, s, tree_fields)
            leaf_kw = {**kw, "p": as_real(p)} if with_params else kw
            u, new_s = rule(as_real(g), *s, **leaf_kw)
            out_u.append(_as_complex(u, g.dtype) if jnp.iscomplexobj(g) else u.astype(g.dtype))
            out_s.append(tuple(n.astype(o.dtype) for n, o in zip(new_s, s)))

        columns = _columns(treedef, out_s, len(tree_fields))
        new_updates = treedef.unflatten(out_u)
        if counted:
            return new_updates, state(safe_increment(opt_state[0]), *columns)
        return new_updates, state(*columns)

    return GradientTransformation(init, update)
