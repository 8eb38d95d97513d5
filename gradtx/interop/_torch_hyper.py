"""Which gradtx alias a torch state dict describes, and whether a given transform is
that alias: the hyperparameters of ``param_groups``, the state layout they imply, and a
probe that compares updates (a gradtx transform's hyperparameters cannot be read back)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from gradtx import GradientTransformation, OptState, rmsprop, rprop
from gradtx.interop._torch_state import fill, layout

HYPER = {
    "Rprop": ("lr", "etas", "step_sizes", "maximize"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
}
"""The hyperparameters that change numbers; foreach, differentiable and capturable only
choose torch's implementation."""

# ----------------------------------------------------------------------------------------
# Hyperparameters
# ----------------------------------------------------------------------------------------


def kind_of_groups(groups: list[dict]) -> str:
    keys = set(groups[0]) if groups else set()
    if {"etas", "step_sizes"} <= keys:
        return "Rprop"
    if {"alpha", "centered", "momentum"} <= keys:
        return "RMSprop"
    raise ValueError(
        f"not a torch.optim.Rprop or RMSprop state dict: its param_groups have keys {sorted(keys)}."
    )


def plain(value: Any) -> Any:
    """A torch scalar tensor (a 'Tensor lr') as a float; tuples of them as tuples."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    return value


def hyperparameters(groups: list[dict]) -> tuple[str, dict]:
    """(kind, hyperparameters shared by all groups); ValueError if groups differ."""
    if not groups:
        raise ValueError("the state dict has no param_groups.")
    kind = kind_of_groups(groups)
    hps = [
        {k: plain(g.get(k, False if k == "maximize" else None)) for k in HYPER[kind]}
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


def describe(kind: str, hp: dict) -> str:
    return f"torch.optim.{kind}(" + ", ".join(f"{k}={v!r}" for k, v in hp.items()) + ")"


def alias(kind: str, hp: dict) -> GradientTransformation:
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


def checklayout(state: OptState, ref_state: OptState, what: str, kind: str, hp: dict):
    got, want = layout(state), layout(ref_state)
    if got != want:
        raise ValueError(
            f"{what} has the state layout {got}, but {describe(kind, hp)} is gradtx's "
            f"{want}: the optimizer kind or its maximize/weight_decay/centered/momentum "
            "settings differ."
        )


# ----------------------------------------------------------------------------------------
# The probe: same structure is not enough, same updates is the test
# ----------------------------------------------------------------------------------------


def probe(tx: GradientTransformation, ref: GradientTransformation, kind: str, hp: dict):
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
                    f"tx gives different updates from {describe(kind, hp)} on a probe "
                    f"problem (step {t + 1}): its hyperparameters differ from the state "
                    "dict's param_groups."
                )
