"""What the torch bridge refuses before it converts: params matched to torch's
parameters in the wrong order (a dict's keys sorted by JAX), a gradtx state built for
other shapes, and torch values gradtx's Rprop state cannot hold (NaN or negative step
sizes, NaN previous gradients, step sizes outside its range)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from gradtx import OptState, Params, rprop_step_sizes
from gradtx._trees import leaf_paths
from gradtx.interop._torch_state import FIELDS, blocks, read


def _name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def leaf_names(params: Params) -> list[str]:
    """Each leaf's key path joined by '.', as torch names parameters ('fc.weight')."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [".".join(_name(e) for e in path) for path, _ in flat]


def torch_order(params: Params, names: Sequence[str] | None, count: int) -> list[int]:
    """For each torch parameter in order, the index of its params leaf (jax.tree_util
    order): by position, or by ``names`` (torch's names, e.g. from named_parameters())."""
    n = len(jax.tree.leaves(params))
    if n != count:
        return list(range(n))  # the count check that follows says what differs
    if names is None:
        return list(range(n))
    if isinstance(names, str) or len(names) != n:
        raise ValueError(
            f"names must list one name per torch parameter, in torch's order ({n}); got {names!r}."
        )
    mine = leaf_names(params)
    unknown = [x for x in names if x not in mine]
    if unknown or len(set(names)) != n:
        raise ValueError(
            f"names must name each params leaf once, by its key path joined with '.' "
            f"(params has {mine}); {'unknown: ' + str(unknown) if unknown else 'repeated'}."
        )
    return [mine.index(x) for x in names]


def _has_dict(params: Params) -> bool:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return any(isinstance(e, jax.tree_util.DictKey) for path, _ in flat for e in path)


def check_order(params: Params, order: list[int], torch_shapes: list, what: str) -> None:
    """Refuse, saying why, params whose leaves meet torch's parameters in another order
    when a dict's sorted keys explain it (its shapes match torch's as a multiset)."""
    leaves = jax.tree.leaves(params)
    if len(leaves) != len(torch_shapes):
        return
    shapes = [tuple(np.shape(leaves[j])) for j in order]
    known = [(s, t) for s, t in zip(shapes, torch_shapes) if t is not None]
    bad = next(
        (k for k, (s, t) in enumerate(zip(shapes, torch_shapes)) if t not in (None, s)), None
    )
    if bad is None or not _has_dict(params):
        return
    if Counter(s for s, _ in known) != Counter(t for _, t in known):
        return
    names = leaf_names(params)
    raise ValueError(
        f"parameter {bad}: {what} has shape {torch_shapes[bad]} where params' leaf "
        f"{bad} in jax.tree_util order ({names[order[bad]]!r}) has {shapes[bad]}. params "
        f"holds a dict, and JAX orders a dict's leaves by sorted key ({names}), not in "
        "the order torch's parameters were registered: that is likely the cause. Pass "
        "names=[n for n, _ in model.named_parameters()] (torch's names, matched to "
        "params' key paths joined with '.'), or params as a list in torch's order."
    )


def check_state_shapes(opt_state: OptState, ref_state: OptState, params: Params) -> None:
    """Refuse a state built for other params: every converted field of every block must
    have the shapes and dtypes ``tx.init(params)`` gives."""
    paths = leaf_paths(params)
    treedef = jax.tree.structure(params)
    for block, ref in zip(blocks(opt_state), blocks(ref_state)):
        for field in FIELDS.get(type(block), {}):
            got = treedef.flatten_up_to(read(block, field))
            want = treedef.flatten_up_to(read(ref, field))
            for i, (g, w) in enumerate(zip(got, want)):
                gs, ws = (tuple(np.shape(g)), np.dtype(g.dtype)), (tuple(np.shape(w)), w.dtype)
                if gs != ws:
                    raise ValueError(
                        f"opt_state was built for other params: its {type(block).__name__}."
                        f"{field} for parameter {i} (params path {paths[i]}) is "
                        f"{gs[1].name}{list(gs[0])}, where params needs "
                        f"{np.dtype(ws[1]).name}{list(ws[0])}. Pass the params the state "
                        "was built for (or tx.init(params) for these)."
                    )


def _rprop_leaves(per_leaf: list[dict], params: Params):
    """``(index, where, step sizes)`` of each torch parameter holding Rprop state, after
    refusing NaN or negative step sizes and NaN previous gradients (a broken torch run)."""
    paths = leaf_paths(params)
    for i, values in enumerate(per_leaf):
        if "step_size" not in values:
            continue
        given, prev = np.asarray(values["step_size"]), np.asarray(values["prev"])
        where = f"parameter {i} (params path {paths[i]}): state['step_size']"
        for bad, why in [(np.isnan(given), "NaN"), (given < 0, "negative")]:
            if bad.any():
                raise ValueError(
                    f"{where} holds {int(bad.sum())} {why} value(s) (first at flat index "
                    f"{int(np.argmax(bad.reshape(-1)))}); Rprop's step sizes are positive "
                    "(or 0 with step_sizes' minimum 0): this torch run is broken; resume "
                    "from an earlier state."
                )
        if np.isnan(prev).any():
            raise ValueError(
                f"parameter {i} (params path {paths[i]}): state['prev'] holds NaN; torch "
                "would turn its step sizes into NaN: resume from an earlier state."
            )
        yield i, where, given


def check_rprop_inputs(per_leaf: list[dict], params: Params, error: Exception) -> None:
    """Say which torch parameter holds the values that building the gradtx state
    refused (``error``): NaN or negative step sizes, NaN previous gradients, or step
    sizes beyond what the state holds. Raises; re-raises ``error`` if none is found."""
    sized = [(w, g) for _, w, g in _rprop_leaves(per_leaf, params) if g.size]
    if not sized:
        raise error
    where, given = max(sized, key=lambda wg: float(np.max(wg[1])))
    raise ValueError(
        f"{where} holds {float(np.max(given)):.8g} (its largest), which gradtx's Rprop "
        f"state cannot hold as it is ({error})"
    ) from None


def check_rprop_values(state: OptState, per_leaf: list[dict], params: Params) -> None:
    """Refuse torch Rprop values the gradtx state would not hold as they are: NaN or
    negative step sizes, NaN previous gradients, and step sizes the state stores
    differently (it holds what the rule can reach, not every float)."""
    sizes = jax.tree.leaves(rprop_step_sizes(_rprop_block(state)))
    for i, where, given in _rprop_leaves(per_leaf, params):
        want = given.astype(np.dtype(sizes[i].dtype))
        got = np.asarray(sizes[i])
        off = got.astype(np.float64) != want.astype(np.float64)
        if off.any():
            k = int(np.argmax(off.reshape(-1)))
            was, becomes = float(given.reshape(-1)[k]), float(got.reshape(-1)[k])
            raise ValueError(
                f"{where} holds {was:.8g} (flat index {k}), which gradtx's Rprop state "
                f"cannot hold as it is (it would become {becomes:.8g}): "
                "step sizes outside the range that step_sizes and lr allow cannot be "
                "converted."
            )


def _rprop_block(state: OptState) -> Any:
    return next(b for b in blocks(state) if "step_sizes" in FIELDS.get(type(b), {}))
