"""Move an Rprop or RMSprop run between ``torch.optim`` and gradtx, mid-training.

* :func:`to_torch` turns the state of :func:`gradtx.rprop` / :func:`gradtx.rmsprop` into
  a state dict that ``optimizer.load_state_dict`` accepts, for a ``torch.optim.Rprop`` /
  ``RMSprop`` built over the same parameters;
* :func:`from_torch` turns ``optimizer.state_dict()`` into the state of a gradtx alias,
  so that ``tx.update`` continues the torch run;
* :func:`alias_from_torch` builds that alias from the state dict's hyperparameters.

Parameters are matched by position: torch's parameters, group after group in order,
are the leaves of ``params`` in ``jax.tree_util`` order (``jax.tree.leaves(params)``),
or by name with ``names=[n for n, _ in model.named_parameters()]`` (each the key path
of a params leaf joined with ``'.'``). JAX orders a dict's leaves by sorted key, not in
the order torch registered its parameters: a mismatch that order explains is refused
saying so. Shapes and dtypes must agree, a gradtx state built for other shapes is
refused naming the parameter, and so are torch Rprop values gradtx cannot continue
from as they are (NaN or negative step sizes, a NaN previous gradient). A complex param
is a complex tensor in torch, and its gradtx state is stored as the real view (trailing
axis of 2), torch's ``view_as_real``.

What is converted:

================  ==============================  =====================================
torch             gradtx                          note
================  ==============================  =====================================
Rprop step_size   gradtx.rprop_step_sizes(state)  (packed with the signs in the state)
Rprop prev        gradtx.rprop_prev_signs(state)  gradtx keeps sign(prev) as int8; torch
                                                  only ever uses sign(grad * prev), so
                                                  to_torch writes the sign as prev
RMSprop           ScaleByRmsState.nu /
square_avg        ScaleByRStdDevState.nu
grad_avg          ScaleByRStdDevState.mu          centered=True
momentum_buffer   TraceState.trace                momentum > 0
step              (none)                          see below
================  ==============================  =====================================

``step``: torch counts steps per parameter, but neither Rprop's nor RMSprop's update
reads the count, and gradtx's aliases keep none. :func:`to_torch` writes ``step`` (a
keyword argument, default 0) as every parameter's count, so pass the number of steps
taken if you want torch's counter to go on from there; :func:`from_torch` ignores it.

Hyperparameters: a gradtx transform is a pair of closures, so its hyperparameters
cannot be read back. :func:`from_torch` therefore builds the alias that the state
dict's ``param_groups`` describe (:func:`alias_from_torch`) and checks ``tx`` against
it: the same state structure (optimizer kind, ``maximize``/``weight_decay``,
``centered``, ``momentum``), then the same updates on a small probe problem (which
reveals a different ``lr``, ``etas``, ``step_sizes``, ``alpha``, ``eps``,
``weight_decay``, ``momentum`` or ``maximize``). Any mismatch raises ``ValueError``
naming it. :func:`to_torch` checks ``opt_state``'s structure against the
hyperparameters of ``optimizer``, which are the ones the torch run continues with.
All parameter groups must share their hyperparameters (one gradtx transform has one
set). Hyperparameters given as schedules are not supported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from gradtx import GradientTransformation, OptState, Params
from gradtx._plaindoc import plain_docstrings
from gradtx.interop._torch_checks import (
    check_order,
    check_rprop_inputs,
    check_rprop_values,
    check_state_shapes,
    torch_order,
)
from gradtx.interop._torch_hyper import alias, checklayout, describe, hyperparameters, probe
from gradtx.interop._torch_state import (
    FIELDS,
    blocks,
    check_params,
    fill,
    from_tensor,
    read,
    to_tensor,
)

__all__ = ["alias_from_torch", "from_torch", "to_torch"]


def alias_from_torch(state_dict_or_optimizer: Any) -> GradientTransformation:
    r"""The gradtx alias with the hyperparameters of a torch Rprop/RMSprop optimizer.

    Args:
      state_dict_or_optimizer: a ``torch.optim.Rprop`` or ``RMSprop``, or its
        ``state_dict()``. All param groups must share their hyperparameters.

    Returns:
      :func:`gradtx.rprop` or :func:`gradtx.rmsprop` with the optimizer's ``lr``
      (as ``learning_rate``), ``etas``, ``step_sizes``, ``alpha``, ``eps``,
      ``weight_decay``, ``momentum``, ``centered`` and ``maximize``.

    Example:
      >>> import jax.numpy as jnp
      >>> import torch
      >>> from gradtx.interop.torch import alias_from_torch
      >>> opt = torch.optim.RMSprop([torch.zeros(2)], lr=1e-2, momentum=0.9)
      >>> tx = alias_from_torch(opt)  # gradtx.rmsprop(1e-2, momentum=0.9)
      >>> [type(s).__name__ for s in tx.init({"w": jnp.zeros(2)})]
      ['ScaleByRmsState', 'TraceState', 'EmptyState']
    """
    sd = state_dict_or_optimizer
    groups = sd.state_dict()["param_groups"] if hasattr(sd, "state_dict") else sd["param_groups"]
    return alias(*hyperparameters(groups))


# ----------------------------------------------------------------------------------------
# The bridge
# ----------------------------------------------------------------------------------------


def _torch_params(optimizer: Any) -> list:
    return [p for g in optimizer.param_groups for p in g["params"]]


def to_torch(
    opt_state: OptState,
    params: Params,
    optimizer: Any,
    *,
    step: int = 0,
    names: Sequence[str] | None = None,
) -> dict:
    """A state dict for ``optimizer.load_state_dict`` that continues a gradtx run.

    Args:
      opt_state: the state of :func:`gradtx.rprop` or :func:`gradtx.rmsprop`.
      params: the params tree the state belongs to (its leaves give shapes and order).
      optimizer: a ``torch.optim.Rprop`` or ``RMSprop`` over tensors matching
        ``jax.tree.leaves(params)`` in order; its hyperparameters are the ones the torch
        run continues with, and must imply the layout of ``opt_state``.
      step: written as torch's per-parameter ``step`` count (neither optimizer's math
        reads it; gradtx keeps none).
      names: optional, torch's parameter names in torch's order (e.g. ``[n for n, _ in
        model.named_parameters()]``), each the key path of a params leaf joined with
        ``'.'``; then params are matched by name instead of position.

    Returns:
      ``{"state": {i: {...}}, "param_groups": optimizer.state_dict()["param_groups"]}``
      with ``prev`` written as ``sign(prev)`` (see the module docstring).

    Example:
      >>> import jax.numpy as jnp
      >>> import torch
      >>> import gradtx
      >>> from gradtx.interop.torch import to_torch
      >>> params = {"w": jnp.array([1.0, -1.0])}
      >>> tx = gradtx.rmsprop(1e-2)
      >>> _, opt_state = tx.update({"w": jnp.array([0.5, 0.5])}, tx.init(params), params)
      >>> opt = torch.optim.RMSprop([torch.tensor([1.0, -1.0])], lr=1e-2)
      >>> opt.load_state_dict(to_torch(opt_state, params, opt, step=1))
      >>> opt.state_dict()["state"][0]["square_avg"]
      tensor([0.0025, 0.0025])
    """
    sd = optimizer.state_dict()
    groups = sd["param_groups"]
    kind, hp = hyperparameters(groups)
    if not isinstance(optimizer, getattr(torch.optim, kind)):
        raise ValueError(f"optimizer is a {type(optimizer).__name__}, not Rprop or RMSprop.")
    leaves, treedef = jax.tree.flatten(params)
    tparams = _torch_params(optimizer)
    order = torch_order(params, names, len(tparams))
    check_order(params, order, [tuple(t.shape) for t in tparams], "optimizer's parameter")
    check_params([leaves[j] for j in order], tparams, "optimizer")
    ref_state = alias(kind, hp).init(params)
    checklayout(opt_state, ref_state, "opt_state", kind, hp)
    if jax.tree.structure(opt_state) != jax.tree.structure(ref_state):
        raise ValueError(
            "opt_state's tree structure does not match params': pass the params it was "
            "built for (tx.init(params) gives the structure)."
        )
    check_state_shapes(opt_state, ref_state, params)

    tensor_of = {j: tparams[k] for k, j in enumerate(order)}  # leaf index -> its tensor
    per_leaf: list[dict] = [{} for _ in leaves]
    for block in blocks(opt_state):
        for field, key in FIELDS.get(type(block), {}).items():
            for i, arr in enumerate(treedef.flatten_up_to(read(block, field))):
                per_leaf[i][key] = to_tensor(np.asarray(arr), tensor_of[i])
    step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    ids = [pid for g in groups for pid in g["params"]]
    state = {
        pid: {"step": torch.tensor(float(step), dtype=step_dtype), **per_leaf[j]}
        for pid, j in zip(ids, order)
    }
    return {"state": state, "param_groups": groups}


def from_torch(
    state_dict: dict,
    tx: GradientTransformation,
    params: Params,
    *,
    names: Sequence[str] | None = None,
) -> OptState:
    """The state of ``tx`` that continues a torch Rprop/RMSprop run.

    Args:
      state_dict: ``optimizer.state_dict()`` of a ``torch.optim.Rprop`` or ``RMSprop``
        whose parameters, group after group, are ``jax.tree.leaves(params)`` in order.
      tx: :func:`gradtx.rprop` or :func:`gradtx.rmsprop` with the state dict's
        hyperparameters (:func:`alias_from_torch` builds it); checked, see the module
        docstring.
      params: the params tree (current values; shapes, dtypes and order matter).
      names: optional, as for :func:`to_torch`: torch's parameter names in torch's
        order, to match params by name instead of position.

    Returns:
      ``tx``'s state; params torch has not stepped yet keep ``tx.init``'s values.

    Example:
      >>> import jax.numpy as jnp
      >>> import torch
      >>> from gradtx.interop.torch import alias_from_torch, from_torch
      >>> w = torch.tensor([1.0, -1.0], requires_grad=True)
      >>> opt = torch.optim.RMSprop([w], lr=1e-2, momentum=0.9)
      >>> (w**2).sum().backward()
      >>> opt.step()
      >>> sd = opt.state_dict()
      >>> tx = alias_from_torch(sd)  # gradtx.rmsprop(1e-2, momentum=0.9)
      >>> opt_state = from_torch(sd, tx, {"w": jnp.asarray(w.detach().numpy())})
      >>> print(opt_state[0].nu["w"])
      [0.04 0.04]
    """
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
        raise ValueError("state_dict must be a torch optimizer's state_dict().")
    groups = state_dict["param_groups"]
    kind, hp = hyperparameters(groups)
    ids = [pid for g in groups for pid in g["params"]]
    leaves, treedef = jax.tree.flatten(params)
    if len(leaves) != len(ids):
        raise ValueError(
            f"params has {len(leaves)} leaves but the state dict has {len(ids)} "
            "parameters; they are matched by position (jax.tree_util leaf order)."
        )
    ref = alias(kind, hp)
    template = tx.init(params)
    checklayout(template, ref.init(params), "tx", kind, hp)
    probe(tx, ref, kind, hp)

    torch_state = state_dict["state"]
    wanted = {key for block in blocks(template) for key in FIELDS.get(type(block), {}).values()}
    order = torch_order(params, names, len(ids))
    check_order(params, order, [_shape(torch_state.get(pid), wanted) for pid in ids], "state")
    per_leaf: list[dict] = [{} for _ in leaves]
    for k, (j, pid) in enumerate(zip(order, ids)):
        entry = torch_state.get(pid, {})
        shape, cplx = tuple(np.shape(leaves[j])), bool(jnp.iscomplexobj(leaves[j]))
        if entry:
            missing = wanted - set(entry)
            if missing:
                raise ValueError(
                    f"parameter {k}: the state dict lacks {sorted(missing)} that "
                    f"{describe(kind, hp)} keeps."
                )
            per_leaf[j] = {key: from_tensor(entry[key], shape, cplx, k, key) for key in wanted}
    try:
        state = fill(template, per_leaf, treedef)
    except ValueError as e:  # values the Rprop state refuses: say which parameter
        if kind != "Rprop":
            raise
        check_rprop_inputs(per_leaf, params, e)
    if kind == "Rprop":
        check_rprop_values(state, per_leaf, params)
    return state


def _shape(entry: dict | None, keys: set) -> tuple | None:
    """The shape of a torch parameter's state (None if torch has not stepped it)."""
    for key in sorted(keys & set(entry or {})):
        if isinstance(entry[key], torch.Tensor):
            return tuple(entry[key].shape)
    return None


plain_docstrings(globals(), __all__)  # help() reads plain text (gradtx/_plaindoc.py)
