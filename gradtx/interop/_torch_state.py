"""The torch side of the bridge, leaf by leaf: which gradtx state field is which torch
state key, and tensors to and from gradtx state leaves (shapes, dtypes, complex)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

from gradtx import (
    OptState,
    ScaleByRmsState,
    ScaleByRStdDevState,
    TraceState,
    rprop_prev_signs,
    rprop_step_sizes,
)
from gradtx._rprop._state import RPROP_STATES, with_values

_RPROP = {"step_sizes": "step_size", "prev_signs": "prev"}
FIELDS = {
    **dict.fromkeys(RPROP_STATES, _RPROP),
    ScaleByRmsState: {"nu": "square_avg"},
    ScaleByRStdDevState: {"mu": "grad_avg", "nu": "square_avg"},
    TraceState: {"trace": "momentum_buffer"},
}
"""gradtx state type -> {gradtx field: torch state key}. Rprop's fields are those of
its accessors (:func:`gradtx.rprop_step_sizes`, :func:`gradtx.rprop_prev_signs`), whatever
the layout."""


def read(block: Any, field: str) -> Any:
    """The tree of ``field`` of a block state (Rprop's through its accessors)."""
    if isinstance(block, RPROP_STATES):
        return {"step_sizes": rprop_step_sizes, "prev_signs": rprop_prev_signs}[field](block)
    return getattr(block, field)


def replace(block: Any, new: dict) -> Any:
    """``block`` with the trees in ``new`` ({field: tree}) in place of its own."""
    if isinstance(block, RPROP_STATES):
        return with_values(block, new["step_sizes"], new["prev_signs"])
    return block._replace(**new)


def blocks(state: OptState) -> list:
    """The block states of an alias's chain state, in order (nested tuples flattened)."""
    if isinstance(state, tuple) and not hasattr(state, "_fields"):
        return [b for s in state for b in blocks(s)]
    return [state]


def layout(state: OptState) -> list[str]:
    return [type(b).__name__ for b in blocks(state)]


def check_params(leaves: list, torch_params: list, what: str) -> None:
    if len(leaves) != len(torch_params):
        raise ValueError(
            f"params has {len(leaves)} leaves but {what} has {len(torch_params)} "
            "parameters; they are matched by position (jax.tree_util leaf order)."
        )
    for i, (leaf, tp) in enumerate(zip(leaves, torch_params)):
        shape = tuple(np.shape(leaf))
        if tuple(tp.shape) != shape:
            raise ValueError(
                f"parameter {i}: params leaf has shape {shape} but {what} has {tuple(tp.shape)}."
            )
        if jnp.iscomplexobj(leaf) != bool(torch.is_complex(tp)):
            raise ValueError(
                f"parameter {i}: params leaf is {jnp.result_type(leaf)} but {what} has "
                f"{tp.dtype}; complex must meet complex."
            )


def _numpy(x: Any) -> np.ndarray:
    """A gradtx leaf as a NumPy array torch can take (bfloat16 goes through float32,
    exactly)."""
    x = np.array(x)
    return x if x.dtype in (np.float16, np.float32, np.float64) else x.astype(np.float32)


def to_tensor(real_view: Any, like: torch.Tensor) -> torch.Tensor:
    """A gradtx state leaf (real view for complex params) as a tensor like ``like``."""
    real_view = _numpy(real_view)
    if torch.is_complex(like):
        if like.numel() == 0:  # view_as_complex needs a unit stride a zero-size array lacks
            return torch.zeros(like.shape, dtype=like.dtype)
        real = torch.empty(0, dtype=like.dtype).real.dtype
        t = torch.from_numpy(real_view).to(real)
        return torch.view_as_complex(t.contiguous()).clone()
    return torch.from_numpy(real_view).to(like.dtype)


def from_tensor(t: Any, leaf_shape: tuple, complex_leaf: bool, i: int, key: str) -> np.ndarray:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"parameter {i}: state[{key!r}] is not a tensor: {t!r}")
    t = t.detach().cpu()
    if tuple(t.shape) != leaf_shape:
        raise ValueError(
            f"parameter {i}: state[{key!r}] has shape {tuple(t.shape)}, the param {leaf_shape}."
        )
    if torch.is_complex(t):
        if not complex_leaf:
            raise ValueError(f"parameter {i}: state[{key!r}] is complex, the param is real.")
        t = torch.view_as_real(t)
    elif complex_leaf:
        raise ValueError(f"parameter {i}: state[{key!r}] is real, the param is complex.")
    if t.dtype not in (torch.float16, torch.float32, torch.float64):
        t = t.to(torch.float32)  # bfloat16 has no NumPy form; float32 holds it exactly
    return t.numpy()


def fill(template: OptState, per_leaf: list[dict], treedef) -> OptState:
    """``template`` with every field of the torch-convertible blocks replaced by the
    arrays in ``per_leaf`` (one dict of torch keys per leaf; a missing key keeps the
    template's value, as for a param torch has not stepped yet)."""

    def fill_block(block):
        if isinstance(block, tuple) and not hasattr(block, "_fields"):
            return tuple(fill_block(b) for b in block)
        names = FIELDS.get(type(block))
        if names is None:
            return block
        new = {}
        for field, key in names.items():
            leaves = treedef.flatten_up_to(read(block, field))
            out = []
            for leaf, values in zip(leaves, per_leaf):
                if key not in values:
                    out.append(leaf)
                    continue
                v = values[key]
                if field == "prev_signs":
                    v = np.sign(v)
                out.append(jnp.asarray(v).astype(leaf.dtype))
            new[field] = treedef.unflatten(out)
        return replace(block, new)

    return fill_block(template)
