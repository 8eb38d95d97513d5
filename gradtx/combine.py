"""Combining transforms: ``chain`` runs them one after another."""

from __future__ import annotations

import inspect
from typing import Any

from gradtx._base import GradientTransformation, Params, Updates


def _takes_extra_args(tx: Any) -> bool:
    """Whether ``tx.update`` accepts ``**extra_args`` (every gradtx transform does;
    optax's plain ``GradientTransformation`` does not, its ``...ExtraArgs`` does)."""
    try:
        params = inspect.signature(tx.update).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def chain(*transforms: Any) -> GradientTransformation:
    """Apply ``transforms`` in order; the state is the tuple of their states.

    Each member may be a gradtx or an optax transform (anything with ``init`` and
    ``update``). Extra keyword arguments of ``update`` (``value=loss``, ...) are passed
    to every member whose ``update`` takes ``**kwargs``, and not to the others, as in
    ``optax.chain``.
    """
    for i, tx in enumerate(transforms):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(f"chain: argument {i} is not a transform (no init/update): {tx!r}")
    forwards = tuple(_takes_extra_args(tx) for tx in transforms)

    def init(params: Params) -> tuple:
        return tuple(tx.init(params) for tx in transforms)

    def update(updates: Updates, state: tuple, params: Params | None = None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transforms got a state of {len(state)} entries."
            )
        new_state = []
        for tx, s, fwd in zip(transforms, state, forwards):
            updates, s = tx.update(updates, s, params, **(extra_args if fwd else {}))
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)
