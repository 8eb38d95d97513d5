"""The per-leaf engine: one function lifts a rule on one array to a transform on pytrees.

Most transforms are element-wise: a small function of one array (the gradient of one
parameter) and of that array's slice of the state. :func:`leafwise` owns, once for all of
them, what its docstring lists: the tree mapping, the state layout, structure, shape and
dtype checks naming the path (the gradients as the odd one out: the params and state are
what ``init`` saw), complex params, placement, and extra arguments of ``update``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._base import (
    NO_PARAMS_MSG,
    EmptyState,
    GradientTransformation,
    Params,
    Updates,
    abstract_aware,
    safe_increment,
)
from gradtx._numerics import as_complex, as_real, real_shape
from gradtx._sharding import placed_like
from gradtx._trees import (
    check_inexact_updates,
    check_same_structure,
    check_state,
    check_stateless,
    check_update_shape,
    leaf_paths,
)


class Scalars(NamedTuple):
    """The scalar fields of a :func:`leafwise` state, advanced once per update.

    ``fields`` names them (each a field of the state ``NamedTuple``); ``init()`` returns
    their first values as ``{field: array}``; ``step(values, **extra)`` returns
    ``(kwargs, new_values)``: keyword arguments for every leaf's rule this update (a
    bias correction, a scheduled value, ...) and the fields' next values. ``extra`` holds
    the extra arguments of ``update`` that the transform asks for.
    """

    fields: tuple[str, ...]
    init: Callable[[], dict[str, jax.Array]]
    step: Callable[..., tuple[dict[str, Any], dict[str, jax.Array]]]


def counter(per_count: Callable[[jax.Array], dict[str, Any]] | None = None) -> Scalars:
    """A ``count`` field: the ``int32`` number of updates made so far, saturating.
    ``per_count(count)`` (the count before this update) gives the leaves' keyword arguments."""

    def step(values):
        count = values["count"]
        return (per_count(count) if per_count else {}), {"count": safe_increment(count)}

    return Scalars(("count",), lambda: {"count": jnp.zeros([], jnp.int32)}, step)


def _columns(treedef: Any, per_leaf: list[tuple], n_fields: int) -> list[Any]:
    """Transpose per-leaf state tuples into one tree per state field."""
    if not per_leaf:
        return [treedef.unflatten([]) for _ in range(n_fields)]
    return [treedef.unflatten(list(column)) for column in zip(*per_leaf)]


_ARRAYS = (jax.Array, np.ndarray, np.generic, int, float)


def _all_arrays(values: Any) -> bool:
    """Whether a rule's arguments are all arrays (or numbers), so that it can run jitted:
    traced once per leaf signature, reused by the other leaves; else it runs as written."""
    return all(isinstance(x, _ARRAYS) for x in jax.tree.leaves(values))


def concrete_arrays(values: Any) -> bool:
    """Whether ``update`` was called eagerly on arrays. Its leaves' rules then run as one
    compiled program, made once per transform and tree signature, as under ``jax.jit``:
    one number in both modes (XLA fuses a multiply-add into an FMA only inside a compiled
    program), one dispatch per step, and one compile per transform, not one per leaf
    signature. The scalars (a count, a schedule's value) advance outside it, eagerly,
    where their values are checked."""
    return all(
        isinstance(x, _ARRAYS) and not isinstance(x, jax.core.Tracer)
        for x in jax.tree.leaves(values)
    )


def _inline_calls(rule: Callable) -> Callable:
    """``rule`` traced with the jitted functions it calls (``jnp.where``, ``jnp.clip``)
    inlined, so the step holds one call per leaf: XLA clones every call site before
    inlining it (docs/performance.md, "Compile time"). ``jax.disable_jit`` would also
    unroll a ``lax.scan``, which no element-wise rule holds."""

    @functools.wraps(getattr(rule, "func", rule))  # its name (a partial's: its function's)
    def inlined(*args, **kwargs):
        with jax.disable_jit():
            return rule(*args, **kwargs)

    return inlined


def _check_inexact(params: Params, index: int, p: jax.Array) -> None:
    """A stateful transform keeps its state in the param's dtype: integer or bool params
    would make it integer (step sizes rounded to 0, updates truncated). Refused, as
    ``jax.grad`` refuses them."""
    if not jnp.issubdtype(p.dtype, jnp.inexact):
        path = leaf_paths(params)[index]
        raise TypeError(
            f"params at path {path} have dtype {p.dtype}: gradtx's stateful transforms need "
            "floating or complex params (as jax.grad does). Leave integer leaves out of the "
            "optimised tree, or give them set_to_zero() with gradtx.partition."
        )


def leafwise(
    update_leaf: Callable[..., tuple[jax.Array, tuple]],
    *,
    state: type[NamedTuple] = EmptyState,
    init_leaf: Callable[[jax.Array], tuple] | None = None,
    scalars: Scalars | None = None,
    with_params: bool = False,
    extra_args: Sequence[str] = (),
    complex_as_real: bool = True,
    integers: bool = False,
) -> GradientTransformation:
    r"""Lift the rule for one array to a transform over pytrees.

    **The way to write your own transform.** Write the rule for one array, in the
    notation of the paper: ``update_leaf(g, *state_fields) -> (u, new_state_fields)``,
    and, when it keeps state, a ``NamedTuple`` naming the fields and ``init_leaf(p)``
    giving their first values. ``leafwise`` makes it a
    :class:`~gradtx.GradientTransformation` and gives it, for free and the same way as
    every gradtx block:

    * any pytree of params (dicts, lists, dataclasses, flax and equinox modules); ``None``
      entries are empty subtrees and keep no state;
    * a state that is a ``NamedTuple`` of trees mirroring the params (the layout optax,
      orbax and flax expect), plus scalar fields advanced once per step (``scalars=``);
    * complex params as pairs of reals (a trailing axis of 2), as ``torch.optim`` does;
    * errors that name the path: updates, params and state of different structures or
      shapes raise ``ValueError`` naming the first leaf that differs; integer params raise
      ``TypeError`` naming theirs;
    * ``init`` on ``jax.ShapeDtypeStruct`` params: the state's shapes, dtypes and
      shardings, without allocating;
    * state placed like its param under sharding (a state leaf of the param's shape gets
      the param's sharding);
    * extra arguments of ``update`` (``value=loss``) handed to the rule when asked for
      (``extra_args=``), and passed on by every combinator;
    * dtypes: each update leaves with its gradient's dtype and each state leaf keeps its
      own, so ``init_leaf`` choosing a wider accumulator (``jnp.zeros(p.shape,
      jnp.float32)`` for bfloat16 params) is all a rule needs for mixed precision;
    * called eagerly, ``update`` runs every leaf's rule as one compiled program (once per
      transform and tree signature), as ``jax.jit(tx.update)`` does: the same numbers
      in both modes.

    Decorate the function that builds it with :func:`gradtx.constructor` and the
    transforms compare equal when built alike, so that rebuilding one does not recompile.
    The guide page "Write your own transform" builds signSGD with momentum, Lion and WAME
    this way.

    Args:
      update_leaf: ``update_leaf(g, *s, **kw) -> (u, new_s)``: the rule for one leaf.
        ``g`` is the incoming update of that leaf, ``s`` its state arrays (one per tree
        field of ``state``, in order), ``u`` the outgoing update and ``new_s`` a tuple of
        the new state arrays. ``kw`` holds ``p=`` (the param) when ``with_params``, the
        keyword arguments that ``scalars.step`` returns, and, without ``scalars``, the
        requested ``extra_args``.
      state: the ``NamedTuple`` type of the state. Its fields named in ``scalars`` are
        scalars; the others are trees that mirror the params.
      init_leaf: ``init_leaf(p) -> s``: the initial state arrays of one param.
      scalars: the scalar fields and how they advance (:class:`Scalars`, :func:`counter`).
      with_params: whether ``update_leaf`` needs the param (``p=``); ``update`` then
        raises ``ValueError`` when called without params.
      extra_args: names of keyword arguments of ``update`` (e.g. ``"value"``) that the
        transform needs; they go to ``scalars.step`` if there is one, else to every leaf.
      complex_as_real: whether complex leaves reach the rule as pairs of reals (below);
        a rule that reduces over a leaf and counts a complex element once sets ``False``.
      integers: whether integer and bool gradients are taken (a rule exact on them, such
        as :func:`gradtx.set_to_zero`'s, which freezes integer leaves); by default they
        are refused naming their path, as a rule in integer arithmetic would truncate.

    Returns:
      The transform. A complex leaf's state is kept in the real form its rule sees (real and
      imaginary parts on a trailing axis, as ``torch.view_as_real``); its update is complex.

    Example:
      Signum (signSGD with momentum; Bernstein et al., 2018):
      :math:`m_t = \beta m_{t-1} + (1 - \beta) g_t`, :math:`u_t = -\eta\,\mathrm{sign}(m_t)`.

      >>> from typing import NamedTuple
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> class SignumState(NamedTuple):
      ...     momentum: dict
      >>> @gradtx.constructor
      ... def signum(learning_rate, beta=0.9):
      ...     def rule(g, m):
      ...         m = beta * m + (1 - beta) * g
      ...         return -learning_rate * jnp.sign(m), (m,)
      ...     zeros = lambda p: (jnp.zeros_like(p),)
      ...     return gradtx.leafwise(rule, state=SignumState, init_leaf=zeros)
      >>> tx = signum(0.1)
      >>> params = {"w": jnp.array([1.0, -2.0]), "b": None}
      >>> state = tx.init(params)
      >>> updates, state = jax.jit(tx.update)({"w": jnp.array([0.5, -3.0]), "b": None}, state)
      >>> print(updates["w"], state.momentum["w"])
      [-0.1  0.1] [ 0.05 -0.3 ]
      >>> signum(0.1) == tx
      True
    """
    scalar_fields = scalars.fields if scalars else ()
    unknown = [f for f in scalar_fields if f not in state._fields]
    if unknown:
        raise TypeError(f"{state.__name__} has no field(s) {unknown} named in scalars")
    tree_fields = tuple(f for f in state._fields if f not in scalar_fields)
    if tree_fields and init_leaf is None:
        raise TypeError(f"{state.__name__} has fields {tree_fields}: init_leaf is required")

    jitted_rule = jax.jit(_inline_calls(update_leaf))  # used where _all_arrays

    def view(x):  # a leaf as the rule sees it
        return as_real(x) if complex_as_real else x

    def unview(u, g):  # the rule's output as a leaf like g
        return (
            as_complex(u, g.dtype) if complex_as_real and jnp.iscomplexobj(g) else u.astype(g.dtype)
        )

    def assemble(trees: list[Any], scalar_values: dict[str, Any]) -> NamedTuple:
        return state(**dict(zip(tree_fields, trees), **scalar_values))

    @abstract_aware
    def init(params: Params) -> NamedTuple:
        leaves, treedef = jax.tree.flatten(params)
        per_leaf = []
        if tree_fields:
            for i, p in enumerate(leaves):
                p = jnp.asarray(p)
                _check_inexact(params, i, p)
                per_leaf.append(tuple(placed_like(p, s) for s in init_leaf(view(p))))
        columns = _columns(treedef, per_leaf, len(tree_fields))
        return assemble(columns, scalars.init() if scalars else {})

    def update(updates: Updates, opt_state: NamedTuple, params: Params | None = None, **extra):
        missing = [name for name in extra_args if extra.get(name) is None]
        if missing:
            raise TypeError(
                f"this transform needs the keyword argument(s) {missing} in update(): "
                f"update(grads, state, params, {missing[0]}=...). gradtx's and optax's "
                "combinators (chain, named_chain, partition, masked, MultiSteps, "
                "inject_hyperparams, ...) pass it on. flax's TrainState.apply_gradients "
                "passes nothing to tx.update (its keyword arguments replace fields): call "
                f"updates, opt_state = state.tx.update(grads, state.opt_state, state.params, "
                f"{missing[0]}=...) and then state.replace(step=state.step + 1, "
                "params=gradtx.apply_updates(state.params, updates), opt_state=opt_state)."
            )
        if state._fields:
            check_state(opt_state, state, "update()")
        else:
            check_stateless(opt_state, "update()")
        if with_params and params is None:
            raise ValueError(NO_PARAMS_MSG)
        state_trees = [getattr(opt_state, name) for name in tree_fields]
        for name, tree in zip(tree_fields, state_trees):
            try:
                check_same_structure(updates, tree, "updates", f"state.{name}")
            except ValueError as e:
                raise ValueError(
                    f"{e} The state does not belong to these updates: init made it for params "
                    "of another structure, or the gradients are not those of the params "
                    "(compare jax.tree.structure of both)."
                ) from None
        if params is not None:
            check_same_structure(updates, params, "updates", "params")

        kw = {name: extra[name] for name in extra_args}
        new_scalars = {}
        if scalars:  # eagerly their values are read here (a schedule's checked each step)
            kw, new_scalars = scalars.step({f: getattr(opt_state, f) for f in scalar_fields}, **kw)
        args = (updates, state_trees, params, kw)
        new_updates, columns = (compiled if concrete_arrays(args) else run_leaves)(*args)
        return new_updates, assemble(columns, new_scalars)

    def run_leaves(updates, state_trees, params, kw):
        """Every leaf's rule: the updates and one tree per state field."""
        g_leaves, treedef = jax.tree.flatten(updates)
        s_leaves = [treedef.flatten_up_to(tree) for tree in state_trees]
        p_leaves = treedef.flatten_up_to(params) if params is not None else None
        arrays = _all_arrays((updates, state_trees, params, kw))
        rule = jitted_rule if arrays else update_leaf

        out_u, out_s = [], []
        for i, g in enumerate(g_leaves):
            g = jnp.asarray(g)
            if not integers:
                check_inexact_updates(updates, i, g)
            s = tuple(column[i] for column in s_leaves)
            if p_leaves is not None:
                check_update_shape(updates, i, "params", jnp.shape(p_leaves[i]), g.shape)
            want = real_shape(g) if complex_as_real else g.shape
            for name, x in zip(tree_fields, s):
                check_update_shape(updates, i, f"state.{name}", jnp.shape(x), want)
            leaf_kw = {**kw, "p": view(jnp.asarray(p_leaves[i]))} if with_params else kw
            u, new_s = rule(view(g), *s, **leaf_kw)
            out_u.append(unview(u, g))
            out_s.append(tuple(n.astype(o.dtype) for n, o in zip(new_s, s)))

        return treedef.unflatten(out_u), _columns(treedef, out_s, len(tree_fields))

    compiled = jax.jit(run_leaves)  # the eager update: see concrete_arrays
    return GradientTransformation(init, update)
