"""Combining transforms: ``chain`` runs them one after another; ``partition`` applies a
different transform to each group of parameters (torch's param groups)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import jax

from gradtx._base import (
    GradientTransformation,
    Params,
    Updates,
    abstract_aware,
    update_with_extra_args,
)
from gradtx._masking import masked, resolve
from gradtx._trees import StateMismatchError, check_state, describe


def _require_transform(tx: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``tx`` has callable ``init`` and ``update``."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(f"{where} is not a transform (no init/update): {tx!r}")


def _check_members(state: Any, n: int) -> None:
    """Refuse, before reading it, a state that is not the tuple of ``n`` member states
    that :func:`chain`'s ``init`` makes (``None``; another transform's state)."""
    if state is None:
        check_state(state, tuple, "chain")
    if not isinstance(state, tuple | list) or hasattr(state, "_fields") or len(state) != n:
        raise StateMismatchError(
            f"chain: the state passed does not belong to this chain of {n} transforms. It "
            f"expects a tuple of {n} member states, as its init(params) makes; it got "
            f"{describe(state)}. Pass the state this chain's init made (a state made by "
            "another transform, or by a chain of other members, does not fit)."
        )


def chain(*transforms: Any) -> GradientTransformation:
    r"""Apply transforms one after another; the state is the tuple of their states.

    Formula::

        u = f_n( ... f_2(f_1(g)) ... )

    .. math:: u = (f_n \circ \dots \circ f_1)(g)

    Each member may be a gradtx or an optax transform (anything with ``init`` and
    ``update``). Extra keyword arguments of ``update`` (``value=loss``, ...) are passed to
    every member whose ``update`` takes ``**kwargs``, and not to the others, as in
    ``optax.chain``.

    Args:
      *transforms: the transforms, in the order they apply.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is the tuple of the members'
      states.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.chain(gradtx.clip(1.0), gradtx.scale_by_learning_rate(0.1))
      >>> updates, _ = tx.update({"w": jnp.array([5.0, -0.5])}, tx.init(None))
      >>> print(updates["w"])
      [-0.1   0.05]
    """
    for i, tx in enumerate(transforms):
        _require_transform(tx, f"chain: argument {i}")
    updates_fns = tuple(update_with_extra_args(tx) for tx in transforms)

    @abstract_aware
    def init(params: Params) -> tuple:
        return tuple(tx.init(params) for tx in transforms)

    def update(updates: Updates, state: tuple, params: Params | None = None, **extra_args):
        _check_members(state, len(transforms))
        new_state = []
        for i, (update_fn, s) in enumerate(zip(updates_fns, state)):
            try:
                updates, s = update_fn(updates, s, params, **extra_args)
            except (TypeError, ValueError) as e:
                e.add_note(f"(raised by member {i} of the chain, counting from 0)")
                raise
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def named_chain(*transforms: tuple[str, Any]) -> GradientTransformation:
    r""":func:`chain` with a name for each member; the state is ``{name: state}``.

    The state is an ``OrderedDict`` in the members' order (``state["rms"]``). Names must be
    unique. Same as ``optax.named_chain``.

    Args:
      *transforms: ``(name, transform)`` pairs, in the order they apply.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is an ``OrderedDict``.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.named_chain(("clip", gradtx.clip(1.0)), ("momentum", gradtx.trace(0.9)))
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> list(state), state["momentum"]
      (['clip', 'momentum'], TraceState(trace={'w': Array([0., 0.], dtype=float32)}))
    """
    names = [name for name, _ in transforms]
    if len(names) != len(set(names)):
        raise ValueError(f"Invalid names: {names!r} (must be unique).")
    for name, tx in transforms:
        _require_transform(tx, f"named_chain: {name!r}")
    inner = chain(*(tx for _, tx in transforms))

    @abstract_aware
    def init(params: Params) -> OrderedDict:
        return OrderedDict(zip(names, inner.init(params)))

    def update(updates: Updates, state: dict, params: Params | None = None, **extra_args):
        if state is None:
            check_state(state, OrderedDict, "named_chain")
        if not isinstance(state, dict) or list(state) != names:
            raise StateMismatchError(
                f"named_chain: the state passed does not belong to this transform. It expects "
                f"{{name: state}} for the names {names}, as its init(params) makes; it got "
                f"{describe(state)}. Pass the state this transform's init made."
            )
        updates, states = inner.update(
            updates, tuple(state[n] for n in names), params, **extra_args
        )
        return updates, OrderedDict(zip(names, states))

    return GradientTransformation(init, update)


def leaf_keys(transforms: dict[Any, Any], labels: Any) -> Any:
    """``labels`` with each label replaced by the position in ``transforms`` of the key it
    names.

    One notion of label equality everywhere: a label names the key that
    ``transforms[label]`` finds (Python's dict lookup: hash and ``==``, so ``1``,
    ``np.int64(1)`` and ``True`` name the key ``1``; ``"1"`` does not). A node of
    ``labels`` that is itself a key (a tuple label) is one label, not a subtree. A label
    that names no key, or cannot be one (unhashable: a list, an array), is refused naming
    its path, as optax refuses a label with no transform.
    """
    canonical = {k: i for i, k in enumerate(transforms)}

    def is_label(x: Any) -> bool:
        try:
            return x in canonical
        except TypeError:  # unhashable: a list, dict or array, a subtree or refused below
            return False

    def key_of(path: Any, label: Any) -> Any:
        where = jax.tree_util.keystr(path) or "<root>"
        try:
            return canonical[label]
        except TypeError:
            raise TypeError(
                f"Invalid param_labels: the label at path {where} is {label!r} "
                f"({type(label).__name__}), which cannot be a dict key. Labels are keys of "
                f"transforms ({list(transforms)}): use hashable labels (str, int, ...)."
            ) from None
        except KeyError:
            raise ValueError(
                f"Invalid param_labels: the label at path {where} is {label!r} "
                f"({type(label).__name__}), which has no transform (transforms has the keys "
                f"{list(transforms)}; a label matches a key as a dict lookup does, so '0' "
                "does not match 0). Add a transform for it or relabel that leaf."
            ) from None

    return jax.tree_util.tree_map_with_path(key_of, labels, is_leaf=is_label)


class PartitionState(NamedTuple):
    r"""The state of :func:`partition`: one inner state per label.

    Attributes:
      inner_states: ``{label: state}``, each over that label's leaves only.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> transforms = {"a": gradtx.trace(0.9), "b": gradtx.identity()}
      >>> tx = gradtx.partition(transforms, {"w": "a", "b": "b"})
      >>> tx.init({"w": jnp.zeros(1), "b": jnp.zeros(1)}).inner_states["a"]
      MaskedState(inner_state=TraceState(trace={'b': MaskedNode(),
                                                'w': Array([0.], dtype=float32)}))
    """

    inner_states: dict[Any, Any]  # label -> the state of that label's transform


def partition(transforms: dict[Any, Any], param_labels: Any) -> GradientTransformation:
    r"""Apply a different transform to each group of parameters: torch's param groups.

    Each transform sees only its own leaves (the others are empty :class:`MaskedNode`), so it
    keeps state for those alone. A label names the key that ``transforms[label]`` finds
    (a dict lookup, the one notion of label equality in the check and the grouping alike:
    ``np.int64(0)`` names the key ``0``, the string ``"0"`` does not); a label with no
    transform raises ``ValueError`` naming its path, an unhashable one ``TypeError``. A
    tuple that is a key of ``transforms`` is one label, not a subtree. Same name (as
    ``optax.transforms.partition``; ``multi_transform`` is its alias), arguments and state
    layout as optax.

    Args:
      transforms: ``{label: transform}``.
      param_labels: each leaf's (or subtree's) label: a pytree of labels with the params'
        structure or a prefix of it, or a function ``params -> labels``.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a :class:`PartitionState`.

    Example:
      Per-group learning rates, weight decay, even a different optimizer per group:

      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.partition(
      ...     {"fast": gradtx.rmsprop(1e-1), "slow": gradtx.rmsprop(1e-3)},
      ...     lambda params: {k: "slow" if k == "b" else "fast" for k in params},
      ... )
      >>> params = {"w": jnp.zeros(1), "b": jnp.zeros(1)}
      >>> updates, _ = tx.update({"w": jnp.ones(1), "b": jnp.ones(1)}, tx.init(params), params)
      >>> print(updates["w"].round(3), updates["b"].round(3))
      [-1.] [-0.01]
    """
    for label, tx in transforms.items():
        _require_transform(tx, f"partition: transforms[{label!r}]")

    def groups(labels: Any) -> dict[Any, Any]:
        """``{key: mask}``: for each key of ``transforms``, where its transform applies."""
        index = leaf_keys(transforms, labels)
        return {k: jax.tree.map(lambda i, j=j: i == j, index) for j, k in enumerate(transforms)}

    @abstract_aware
    def init(params: Params) -> PartitionState:
        if not jax.tree.leaves(params):  # nothing to label: optax.tree.map_params's probe
            return PartitionState({k: masked(tx, ()).init(params) for k, tx in transforms.items()})
        masks = groups(resolve(param_labels, params))
        return PartitionState(
            {k: masked(tx, masks[k]).init(params) for k, tx in transforms.items()}
        )

    def update(updates: Updates, state: PartitionState, params: Params | None = None, **extra):
        check_state(state, PartitionState, "partition")
        if not isinstance(state.inner_states, dict) or set(state.inner_states) != set(transforms):
            raise StateMismatchError(
                "partition: the state passed does not belong to this transform. It expects "
                f"one state per label {list(transforms)}, as its init(params) makes; it got "
                f"{describe(state)}. Pass the state this transform's init made."
            )
        masks = groups(resolve(param_labels, updates))
        new_states = {}
        for k, tx in transforms.items():
            updates, new_states[k] = masked(tx, masks[k]).update(
                updates, state.inner_states[k], params, **extra
            )
        return updates, PartitionState(new_states)

    return GradientTransformation(init, update)


multi_transform = partition
"""optax's older name for :func:`partition`."""
