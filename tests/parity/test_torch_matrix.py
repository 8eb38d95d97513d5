"""gradtx.rprop / gradtx.rmsprop against torch.optim.Rprop / RMSprop, run side by side.

The configurations are the ones torch's own optimizer tests run
(``torch.testing._internal.common_optimizers.optim_db``: each ``OptimizerInfo``'s
``optim_inputs_func``, CPU and CUDA lists both), each crossed with

* torch's implementations: the single-tensor loop (``foreach=False``), the multi-tensor
  path (``foreach=True``) and ``differentiable=True``;
* float32 and float64, real and complex, and a scalar, a zero-size array, a matrix and a
  nested dict of mixed shapes, all leaves of one params tree (torch gets them in
  ``jax.tree_util`` leaf order), plus bare single-array trees;
* 100 steps of a problem whose gradients change sign often (``tests/_runners.py``), where the
  Rprop runs are asserted to have hit both step-size bounds and to have seen sign flips.

Rprop must match bit for bit (error 0); RMSprop within the tolerance that torch's own
conditioning allows (``_tolerance.tolerance``: 16 times how far torch moves against itself
when its params or gradients are nudged by one ulp, at least one ulp per step).

Flags that torch offers and how each is covered:

* ``maximize``, ``weight_decay``, ``momentum``, ``centered``, ``lr``, ``etas``,
  ``step_sizes``: gradtx arguments of the same name; in torch's list. ``alpha`` and
  ``eps`` (which torch's list never moves) and momentum without ``centered``: one
  configuration added to the list.
* ``lr`` as a tensor (torch's "Tensor lr" configurations): passed to gradtx as a 0-d
  array of the same dtype, which is what torch computes with.
* ``foreach`` and ``differentiable``: torch-side implementation choices that must not
  change the numbers; every configuration runs all three and gradtx must match each.
  (``differentiable`` also lets autograd see through the step; in JAX every update is
  differentiable by construction.)
* ``capturable``: keeps torch's step counter on the accelerator for CUDA graphs; torch
  refuses it for CPU tensors, and its math is the same as the non-capturable path (it
  replaces masked assignments by ``torch.where``). In JAX the whole update is a traced
  function with its state on the device already, so there is nothing to capture. The
  CUDA-only configurations run here with ``capturable`` dropped and their other
  arguments (``maximize``, ``weight_decay``, a tensor ``lr``) kept; those that then
  equal a CPU configuration ("capturable" is "default", "capturable, maximize" is
  "maximize, weight_decay") run once.
* ``fused``: not offered by torch for Rprop or RMSprop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradtx
from tests import _runners as r
from tests import _tolerance as h

STEPS = 100
IMPLS = {
    "single": {"foreach": False},
    "foreach": {"foreach": True},
    "differentiable": {"foreach": False, "differentiable": True},
}


def torch_configs(name: str) -> tuple[list, list[tuple[str, dict]]]:
    """(every configuration torch's suite lists for ``name``, CPU and CUDA; the distinct
    ones once ``capturable`` is dropped, each named by its first description). Imports
    torch's test tables (seconds): called by one test, not at collection."""
    from torch.testing._internal.common_optimizers import optim_db

    (info,) = [i for i in optim_db if i.optim_cls.__name__ == name]
    listed = {}
    for device in ("cpu", "cuda"):
        for oi in info.optim_inputs_func(device=device):
            listed.setdefault(oi.desc, oi.kwargs)
    out, seen = [], []
    for desc, kw in listed.items():
        kwargs = {k: v for k, v in kw.items() if k != "capturable"}
        key = repr(sorted(kwargs.items()))
        if key not in seen:
            seen.append(key)
            out.append((desc, kwargs))
    return list(listed), out


# torch_configs("Rprop") and torch_configs("RMSprop") as torch 2.13 lists them, written
# out so that collecting this file does not import torch's test tables in every xdist
# worker; test_configurations_come_from_torch_suite checks that they are torch's list.
RPROP_CONFIGS = [
    ("default", {}),
    ("non-default lr", {"lr": 0.0002}),
    ("non-default etas", {"etas": (0.5, 1.5)}),
    ("non-default step_sizes", {"step_sizes": (2e-06, 100)}),
    ("maximize", {"maximize": True}),
    ("Tensor lr with capturable", {"lr": torch.tensor(0.001)}),
]
RMSPROP_CONFIGS = [
    ("default", {}),
    ("non-default lr", {"lr": 0.001}),
    ("nonzero weight_decay", {"weight_decay": 0.1}),
    ("maximize", {"maximize": True}),
    ("centered", {"weight_decay": 0.1, "centered": True}),
    ("maximize, weight_decay", {"maximize": True, "weight_decay": 0.1}),
    ("momentum", {"weight_decay": 0.1, "centered": True, "momentum": 0.1}),
    (
        "maximize, centered, weight_decay, w/ momentum",
        {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    ),
    ("Tensor lr with capturable", {"lr": torch.tensor(0.001)}),
]
# torch's list never moves alpha or eps, nor uses momentum without centered: one more.
RMSPROP_EXTRA = [
    ("extra: alpha, eps, plain momentum", {"alpha": 0.9, "eps": 1e-3, "momentum": 0.9})
]


def _gradtx_value(v):
    """A torch tensor hyperparameter as a NumPy 0-d array of the same dtype."""
    return v.numpy() if isinstance(v, torch.Tensor) else v


def gradtx_for(name: str, kwargs: dict) -> gradtx.GradientTransformation:
    kw = {("learning_rate" if k == "lr" else k): _gradtx_value(v) for k, v in kwargs.items()}
    return {"Rprop": gradtx.rprop, "RMSprop": gradtx.rmsprop}[name](**kw)


def _compare(name, desc, kwargs, prob, steps, rprop_stats=False):
    ours, _, _ = r.run_gradtx_scan(gradtx_for(name, kwargs), prob, steps)
    cls = getattr(torch.optim, name)

    def run(impl_kw, nudge=None, stats=None):
        p = prob.nudged(nudge)
        params = r.torch_tensors(p.leaves["theta"])
        return r.run_torch_problem(cls(params, **kwargs, **impl_kw), params, p, 0, steps, stats)

    # Rprop: bit for bit, as documented. RMSprop: the tolerance torch's own conditioning
    # allows, measured on its single-tensor loop (the implementations share their math).
    nudged = None if name == "Rprop" else [run(IMPLS["single"], n) for n in h.NUDGES]
    for impl, impl_kw in IMPLS.items():
        stats = {} if rprop_stats and impl == "single" else None
        theirs = run(impl_kw, stats=stats)
        h.check_against(
            f"torch.optim.{name}", desc, prob.dtypes, ours, theirs, nudged, steps, f" / {impl}"
        )
        if stats is not None:
            assert stats["hit_min"] and stats["hit_max"], stats
            assert stats["flips"] > 100, stats


@pytest.mark.parametrize("desc,kwargs", RPROP_CONFIGS, ids=[d for d, _ in RPROP_CONFIGS])
def test_rprop_matches_torch(desc, kwargs):
    _compare("Rprop", desc, kwargs, r.problem("rprop", STEPS), STEPS, rprop_stats=True)


@pytest.mark.parametrize(
    "desc,kwargs",
    RMSPROP_CONFIGS + RMSPROP_EXTRA,
    ids=[d for d, _ in RMSPROP_CONFIGS + RMSPROP_EXTRA],
)
def test_rmsprop_matches_torch(desc, kwargs):
    _compare("RMSprop", desc, kwargs, r.problem("rms", STEPS), STEPS)


def test_configurations_come_from_torch_suite():
    """The matrix is torch's list: every Rprop/RMSprop entry of optim_db is here, with
    the same arguments (a tensor ``lr``: the same dtype and value)."""

    def canonical(configs):
        return [
            (
                d,
                {
                    k: (v.dtype, v.item()) if isinstance(v, torch.Tensor) else v
                    for k, v in kw.items()
                },
            )
            for d, kw in configs
        ]

    for name, ours in (("Rprop", RPROP_CONFIGS), ("RMSprop", RMSPROP_CONFIGS)):
        listed, theirs = torch_configs(name)
        assert canonical(ours) == canonical(theirs), name
        assert len(listed) >= {"Rprop": 7, "RMSprop": 11}[name]
    flags = {k for _, kw in RMSPROP_CONFIGS for k in kw}
    assert {"maximize", "weight_decay", "momentum", "centered", "lr"} <= flags
    flags = {k for _, kw in RPROP_CONFIGS for k in kw}
    assert {"maximize", "lr", "etas", "step_sizes"} <= flags


BARE = [((), np.float32), ((0,), np.complex128), ((3, 4), np.complex64), ((2, 3), np.float64)]


@pytest.mark.parametrize("shape,dtype", BARE, ids=[f"{np.dtype(d).name}{list(s)}" for s, d in BARE])
@pytest.mark.parametrize("name", ["Rprop", "RMSprop"])
def test_bare_array_params(name, shape, dtype):
    """A params 'tree' that is one array (the root is a leaf)."""
    prob = r.Problem((shape, dtype), 30, far={"Rprop": 1e4, "RMSprop": 3.0}[name], seed=1)
    kwargs = {"momentum": 0.5, "centered": True} if name == "RMSprop" else {}
    _compare(name, f"bare {np.dtype(dtype).name}{list(shape)}", kwargs, prob, 30)
