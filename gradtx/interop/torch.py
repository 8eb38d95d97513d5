"""Move an Rprop or RMSprop run between ``torch.optim`` and gradtx, mid-training.

* :func:`to_torch` turns the state of :func:`gradtx.rprop` / :func:`gradtx.rmsprop` into
  a state dict that ``optimizer.load_state_dict`` accepts, for a ``torch.optim.Rprop`` /
  ``RMSprop`` built over the same parameters;
* :func:`from_torch` turns ``optimizer.state_dict()`` into the state of a gradtx alias,
  so that ``tx.update`` continues the torch run;
* :func:`alias_from_torch` builds that alias from the state dict's hyperparameters.

Parameters are matched by position: torch's parameters, group after group in order,
are the leaves of ``params`` in ``jax.tree_util`` order (``jax.tree.leaves(params)``).
Shapes and dtypes must agree; a complex param is a complex tensor in torch, and its
gradtx state is stored as the real view (trailing axis of 2), torch's ``view_as_real``.

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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from gradtx import GradientTransformation, OptState, Params, rmsprop, rprop
from gradtx.interop._torch_state import (
    FIELDS,
    blocks,
    check_params,
    fill,
    from_tensor,
    layout,
    read,
    to_tensor,
)

__all__ = ["alias_from_torch", "from_torch", "to_torch"]

_HYPER = {
    "Rprop": ("lr", "etas", "step_sizes", "maximize"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
}
"""The hyperparameters that change numbers; foreach, differentiable and capturable only
choose torch's implementation."""

# ----------------------------------------------------------------------------------------
# Hyperparameters
# ----------------------------------------------------------------------------------------


def _kind_of_groups(groups: list[dict]) -> str:
    keys = set(groups[0]) if groups else set()
    if {"etas", "step_sizes"} <= keys:
        return "Rprop"
    if {"alpha", "centered", "momentum"} <= keys:
        return "RMSprop"
    raise ValueError(
        f"not a torch.optim.Rprop or RMSprop state dict: its param_groups have keys {sorted(keys)}."
    )


def _plain(value: Any) -> Any:
    """A torch scalar tensor (a 'Tensor lr') as a float; tuples of them as tuples."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def _hyperparameters(groups: list[dict]) -> tuple[str, dict]:
    """(kind, hyperparameters shared by all groups); ValueError if groups differ."""
    if not groups:
        raise ValueError("the state dict has no param_groups.")
    kind = _kind_of_groups(groups)
    hps = [
        {k: _plain(g.get(k, False if k == "maximize" else None)) for k in _HYPER[kind]}
        for g in groups
    ]
    for i, hp in enumerate(hps[1:], 1):
        if hp != hps[0]:
            diff = {k: (hps[0][k], hp[k]) for k in hp if hp[k] != hps[0][k]}
            raise ValueError(
                f"param_groups 0 and {i} have different hyperparameters {diff}; one gradtx "
                "alias has one set: build one alias per group and convert each group's "
                "state on its own."
            )
    return kind, hps[0]


def _describe(kind: str, hp: dict) -> str:
    return f"torch.optim.{kind}(" + ", ".join(f"{k}={v!r}" for k, v in hp.items()) + ")"


def _alias(kind: str, hp: dict) -> GradientTransformation:
    if kind == "Rprop":
        return rprop(
            hp["lr"], tuple(hp["etas"]), tuple(hp["step_sizes"]), maximize=bool(hp["maximize"])
        )
    return rmsprop(
        hp["lr"],
        hp["alpha"],
        hp["eps"],
        hp["weight_decay"],
        hp["momentum"],
        bool(hp["centered"]),
        maximize=bool(hp["maximize"]),
    )


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
    return _alias(*_hyperparameters(groups))


def _checklayout(state: OptState, ref_state: OptState, what: str, kind: str, hp: dict):
    got, want = layout(state), layout(ref_state)
    if got != want:
        raise ValueError(
            f"{what} has the state layout {got}, but {_describe(kind, hp)} is gradtx's "
            f"{want}: the optimizer kind or its maximize/weight_decay/centered/momentum "
            "settings differ."
        )


# ----------------------------------------------------------------------------------------
# The probe: same structure is not enough, same updates is the test
# ----------------------------------------------------------------------------------------


def _probe(tx: GradientTransformation, ref: GradientTransformation, kind: str, hp: dict):
    """Raise ValueError if ``tx`` and ``ref`` give different updates on a small problem
    that exercises every hyperparameter of ``kind``. float32 throughout, so that it runs
    the same with or without ``jax_enable_x64``."""
    rng = np.random.default_rng(0)
    n = 16
    p = jnp.asarray(rng.uniform(-2, 2, n), jnp.float32)
    grads = [
        (rng.standard_normal(n) * 10.0 ** rng.integers(-9, 2, n)).astype(np.float32)
        for _ in range(4)
    ]
    if kind == "Rprop":
        grads[1] = np.where(np.arange(n) % 2 == 0, grads[0], -grads[0])  # flips and not
    states = [tx.init(p), ref.init(p)]
    if kind == "Rprop":
        # also from step sizes far outside any bounds, to reveal min and max (1e13: about
        # the largest step size Rprop's packed state holds)
        big = np.where(np.arange(n) % 2 == 0, 1e-30, 1e13).astype(np.float32)
        sign = np.sign(grads[2])
        prev = np.where(np.arange(n) % 2 == 0, -sign, sign)
        extreme = [{"step_size": big, "prev": prev}]
        treedef = jax.tree.structure(p)
        extra = [fill(s, extreme, treedef) for s in states]
    # (after a flip iRprop- moves nothing; the clipped step size shows on the next step)
    runs = [(states, grads)] + ([(extra, [grads[2], grads[2]])] if kind == "Rprop" else [])
    for (s_tx, s_ref), gs in runs:
        for t, g in enumerate(gs):
            g = jnp.asarray(g)
            u_tx, s_tx = tx.update(g, s_tx, p)
            u_ref, s_ref = ref.update(g, s_ref, p)
            a, b = np.asarray(u_tx), np.asarray(u_ref)
            if not np.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True):
                raise ValueError(
                    f"tx gives different updates from {_describe(kind, hp)} on a probe "
                    f"problem (step {t + 1}): its hyperparameters differ from the state "
                    "dict's param_groups."
                )


# ----------------------------------------------------------------------------------------
# The bridge
# ----------------------------------------------------------------------------------------


def _torch_params(optimizer: Any) -> list:
    return [p for g in optimizer.param_groups for p in g["params"]]


def to_torch(opt_state: OptState, params: Params, optimizer: Any, *, step: int = 0) -> dict:
    """A state dict for ``optimizer.load_state_dict`` that continues a gradtx run.

    Args:
      opt_state: the state of :func:`gradtx.rprop` or :func:`gradtx.rmsprop`.
      params: the params tree the state belongs to (its leaves give shapes and order).
      optimizer: a ``torch.optim.Rprop`` or ``RMSprop`` over tensors matching
        ``jax.tree.leaves(params)`` in order; its hyperparameters are the ones the torch
        run continues with, and must imply the layout of ``opt_state``.
      step: written as torch's per-parameter ``step`` count (neither optimizer's math
        reads it; gradtx keeps none).

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
    kind, hp = _hyperparameters(groups)
    if not isinstance(optimizer, getattr(torch.optim, kind)):
        raise ValueError(f"optimizer is a {type(optimizer).__name__}, not Rprop or RMSprop.")
    leaves, treedef = jax.tree.flatten(params)
    tparams = _torch_params(optimizer)
    check_params(leaves, tparams, "optimizer")
    ref_state = _alias(kind, hp).init(params)
    _checklayout(opt_state, ref_state, "opt_state", kind, hp)
    if jax.tree.structure(opt_state) != jax.tree.structure(ref_state):
        raise ValueError("opt_state's tree structure does not match params'.")

    per_leaf: list[dict] = [{} for _ in leaves]
    for block in blocks(opt_state):
        for field, key in FIELDS.get(type(block), {}).items():
            for i, arr in enumerate(treedef.flatten_up_to(read(block, field))):
                per_leaf[i][key] = to_tensor(np.asarray(arr), tparams[i])
    step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    ids = [pid for g in groups for pid in g["params"]]
    state = {
        pid: {"step": torch.tensor(float(step), dtype=step_dtype), **values}
        for pid, values in zip(ids, per_leaf)
    }
    return {"state": state, "param_groups": groups}


def from_torch(state_dict: dict, tx: GradientTransformation, params: Params) -> OptState:
    """The state of ``tx`` that continues a torch Rprop/RMSprop run.

    Args:
      state_dict: ``optimizer.state_dict()`` of a ``torch.optim.Rprop`` or ``RMSprop``
        whose parameters, group after group, are ``jax.tree.leaves(params)`` in order.
      tx: :func:`gradtx.rprop` or :func:`gradtx.rmsprop` with the state dict's
        hyperparameters (:func:`alias_from_torch` builds it); checked, see the module
        docstring.
      params: the params tree (current values; shapes, dtypes and order matter).

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
    kind, hp = _hyperparameters(groups)
    ids = [pid for g in groups for pid in g["params"]]
    leaves, treedef = jax.tree.flatten(params)
    if len(leaves) != len(ids):
        raise ValueError(
            f"params has {len(leaves)} leaves but the state dict has {len(ids)} "
            "parameters; they are matched by position (jax.tree_util leaf order)."
        )
    ref = _alias(kind, hp)
    template = tx.init(params)
    _checklayout(template, ref.init(params), "tx", kind, hp)
    _probe(tx, ref, kind, hp)

    torch_state = state_dict["state"]
    wanted = {key for block in blocks(template) for key in FIELDS.get(type(block), {}).values()}
    per_leaf = []
    for i, (leaf, pid) in enumerate(zip(leaves, ids)):
        entry = torch_state.get(pid, {})
        shape, cplx = tuple(np.shape(leaf)), bool(jnp.iscomplexobj(leaf))
        values = {}
        if entry:
            missing = wanted - set(entry)
            if missing:
                raise ValueError(
                    f"parameter {i}: the state dict lacks {sorted(missing)} that "
                    f"{_describe(kind, hp)} keeps."
                )
            for key in wanted:
                values[key] = from_tensor(entry[key], shape, cplx, i, key)
        per_leaf.append(values)
    return fill(template, per_leaf, treedef)
