"""gradtx.interop.torch: a run moves between torch.optim and gradtx mid-training.

50 steps in torch, ``from_torch``, 50 steps in gradtx must equal 100 steps in torch; and
50 steps in gradtx, ``to_torch`` + ``load_state_dict``, 50 steps in torch must equal 100
steps in gradtx. Params mix float32/float64, real/complex, a scalar, a zero-size array, a
matrix and a nested dict (``_runners.SHAPES``).
"""

from __future__ import annotations

import copy

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx
from gradtx.interop.torch import alias_from_torch, from_torch, to_torch
from tests import _runners as r
from tests import _tolerance as h

HALF = 50
CONFIGS = [
    ("Rprop", {}),
    ("Rprop", {"lr": 2e-4, "etas": (0.4, 1.5), "step_sizes": (2e-6, 100.0), "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5, "centered": True, "weight_decay": 0.1, "maximize": True}),
    ("RMSprop", {"lr": torch.tensor(1e-3), "alpha": 0.9, "eps": 1e-6, "momentum": 0.9}),
]
IDS = [f"{n}-{'-'.join(kw) or 'default'}" for n, kw in CONFIGS]


_TX = {}


def _tx(i):
    """One gradtx alias per configuration, shared by both directions (one compile)."""
    if i not in _TX:
        name, kwargs = CONFIGS[i]
        _TX[i] = alias_from_torch(getattr(torch.optim, name)([torch.zeros(1)], **kwargs))
    return _TX[i]


def _prob(name):
    return r.problem("rprop" if name == "Rprop" else "rms", 2 * HALF)


def _continue_torch(opt, params, prob, nudge=None):
    """The last HALF steps in torch, from ``opt`` and ``params`` as they stand; with
    ``nudge``, in a copy of both nudged (``_tolerance.NUDGES``), ``opt`` left as it was."""
    if nudge is None:
        return r.run_torch_problem(opt, params, prob, HALF, HALF)
    p = prob.nudged(nudge)
    leaves = [x.detach().numpy().copy() for x in params]
    copies = r.torch_tensors(h.nudge(leaves) if nudge == "params" else leaves)
    twin = type(opt)(copies, **opt.defaults)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    return r.run_torch_problem(twin, copies, p, HALF, HALF)


def _nudged(name, opt, params, prob):
    """torch's nudged continuations, which measure the tolerance (none for Rprop, which
    continues bit for bit)."""
    return None if name == "Rprop" else [_continue_torch(opt, params, prob, n) for n in h.NUDGES]


def _check(name, kwargs, prob, ours, theirs, nudged, direction):
    reference = f"bridge {direction} ({name})"
    h.check_against(reference, str(kwargs), prob.dtypes, ours, theirs, nudged, HALF)


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=IDS)
def test_torch_then_gradtx_equals_torch(i):
    name, kwargs = CONFIGS[i]
    prob = _prob(name)
    cls = getattr(torch.optim, name)
    params = r.torch_tensors(prob.leaves["theta"])
    opt = cls(params, **kwargs)
    r.run_torch_problem(opt, params, prob, 0, HALF)
    sd = opt.state_dict()
    theta = prob.treedef.unflatten([jnp.asarray(p.detach().numpy().copy()) for p in params])
    tx = _tx(i)  # == alias_from_torch(sd), built once per configuration
    state = from_torch(sd, tx, theta)
    ours, _, _ = r.run_gradtx_scan_from(tx, prob, theta, state, HALF, HALF)
    nudged = _nudged(name, opt, params, prob)
    theirs = _continue_torch(opt, params, prob)  # the same torch run, continued
    _check(name, kwargs, prob, ours, theirs, nudged, "torch->gradtx")


@pytest.mark.parametrize("i", range(len(CONFIGS)), ids=IDS)
def test_gradtx_then_torch_equals_gradtx(i):
    name, kwargs = CONFIGS[i]
    prob = _prob(name)
    cls = getattr(torch.optim, name)
    tx = _tx(i)
    theta0 = prob.tree("theta")
    # init outside the scan, so both halves (and the other direction) share one compile
    first, theta, state = r.run_gradtx_scan_from(tx, prob, theta0, tx.init(theta0), 0, HALF)
    second, _, _ = r.run_gradtx_scan_from(tx, prob, theta, state, HALF, HALF)
    whole = first + second  # 100 steps of gradtx
    params = r.torch_tensors([np.asarray(x) for x in jax.tree.leaves(theta)])
    opt = cls(params, **kwargs)
    opt.load_state_dict(to_torch(state, theta, opt, step=HALF))
    assert all(float(s["step"]) == HALF for s in opt.state.values())
    nudged = _nudged(name, opt, params, prob)
    theirs = _continue_torch(opt, params, prob)
    # torch is the outside reference here too: its continuation is measured against gradtx's
    _check(name, kwargs, prob, whole[HALF:], theirs, nudged, "gradtx->torch")


def test_state_round_trips_exactly():
    """to_torch then from_torch gives back the gradtx state, leaf for leaf."""
    name, kwargs = CONFIGS[3]
    tx = _tx(3)
    prob = _prob(name)
    theta0 = prob.tree("theta")
    _, theta, state = r.run_gradtx_scan_from(tx, prob, theta0, tx.init(theta0), 0, HALF)
    opt = torch.optim.RMSprop(r.torch_tensors(jax.tree.leaves(theta)), **kwargs)
    back = from_torch(to_torch(state, theta, opt), tx, theta)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------------
# Mismatches raise clear errors
# ----------------------------------------------------------------------------------------


def _stepped(cls, params, **kwargs):
    opt = cls(params, **kwargs)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt


@pytest.fixture
def small():
    theta = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    return theta, [torch.ones(3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)]


def test_count_mismatch(small):
    theta, tensors = small
    opt = _stepped(torch.optim.Rprop, tensors[:1])
    with pytest.raises(ValueError, match="2 leaves but the state dict has 1"):
        from_torch(opt.state_dict(), gradtx.rprop(), theta)
    with pytest.raises(ValueError, match="2 leaves but optimizer has 1"):
        to_torch(gradtx.rprop().init(theta), theta, opt)


def test_shape_mismatch(small):
    theta, tensors = small
    opt = _stepped(torch.optim.RMSprop, tensors[::-1])  # wrong order: shapes differ
    with pytest.raises(ValueError, match=r"parameter 0: state\['square_avg'\] has shape"):
        from_torch(opt.state_dict(), gradtx.rmsprop(), theta)
    with pytest.raises(ValueError, match="parameter 0: params leaf has shape"):
        to_torch(gradtx.rmsprop().init(theta), theta, opt)


def test_kind_mismatch(small):
    theta, tensors = small
    opt = _stepped(torch.optim.Rprop, tensors)
    with pytest.raises(ValueError, match="state layout"):
        from_torch(opt.state_dict(), gradtx.rmsprop(), theta)
    with pytest.raises(ValueError, match="state layout"):
        to_torch(gradtx.rmsprop().init(theta), theta, opt)
    sgd = torch.optim.SGD(tensors, lr=0.1)
    with pytest.raises(ValueError, match=r"not a torch\.optim\.Rprop or RMSprop"):
        from_torch(sgd.state_dict(), gradtx.rprop(), theta)


@pytest.mark.parametrize(
    "torch_kw,tx",
    [
        ({"centered": True}, gradtx.rmsprop()),
        ({"momentum": 0.9}, gradtx.rmsprop()),
        ({"lr": 0.1}, gradtx.rmsprop()),
        ({"alpha": 0.9}, gradtx.rmsprop()),
        ({"eps": 1e-6}, gradtx.rmsprop()),
        ({"maximize": True}, gradtx.rmsprop(weight_decay=0.1)),  # same layout, not same
        ({"weight_decay": 0.2}, gradtx.rmsprop(weight_decay=0.1)),
        ({"momentum": 0.5}, gradtx.rmsprop(momentum=0.9)),
    ],
)
def test_rmsprop_hyperparameter_mismatch(small, torch_kw, tx):
    theta, tensors = small
    sd = _stepped(torch.optim.RMSprop, tensors, **torch_kw).state_dict()
    with pytest.raises(ValueError, match=r"state layout|different updates"):
        from_torch(sd, tx, theta)


@pytest.mark.parametrize(
    "torch_kw",
    [
        {"lr": 0.1},
        {"etas": (0.4, 1.2)},
        {"etas": (0.5, 1.3)},
        {"step_sizes": (1e-5, 50)},
        {"step_sizes": (1e-6, 10)},
        {"maximize": True},
    ],
)
def test_rprop_hyperparameter_mismatch(small, torch_kw):
    theta, tensors = small
    sd = _stepped(torch.optim.Rprop, tensors, **torch_kw).state_dict()
    with pytest.raises(ValueError, match=r"state layout|different updates"):
        from_torch(sd, gradtx.rprop(), theta)


def test_groups_with_different_hyperparameters(small):
    theta, tensors = small
    opt = torch.optim.Rprop([{"params": tensors[:1]}, {"params": tensors[1:], "lr": 0.1}])
    with pytest.raises(ValueError, match="param_groups 0 and 1 have different"):
        from_torch(opt.state_dict(), gradtx.rprop(), theta)


def test_groups_with_same_hyperparameters_are_one_sequence(small):
    theta, tensors = small
    opt = torch.optim.Rprop([{"params": tensors[1:]}, {"params": tensors[:1]}])
    # tree leaf order is b (3,), w (2, 3): group 0 holds the (2, 3) tensor, so it fails...
    with pytest.raises(ValueError, match="shape"):
        to_torch(gradtx.rprop().init(theta), theta, opt)
    # ...and in leaf order it loads.
    opt = torch.optim.Rprop([{"params": tensors[:1]}, {"params": tensors[1:]}])
    opt.load_state_dict(to_torch(gradtx.rprop().init(theta), theta, opt))


def test_complex_must_meet_complex():
    theta = {"z": jnp.ones(3, jnp.complex128)}
    opt = _stepped(torch.optim.Rprop, [torch.ones(3, dtype=torch.float64)])
    with pytest.raises(ValueError, match="complex"):
        to_torch(gradtx.rprop().init(theta), theta, opt)
    with pytest.raises(ValueError, match="real, the param is complex"):
        from_torch(opt.state_dict(), gradtx.rprop(), theta)


def test_unstepped_params_keep_init_state(small):
    theta, tensors = small
    opt = torch.optim.Rprop(tensors, lr=0.03)
    state = from_torch(opt.state_dict(), gradtx.rprop(0.03), theta)
    init = gradtx.rprop(0.03).init(theta)
    chex.assert_trees_all_equal(state, init)


def test_core_does_not_import_torch():
    """interop sits at the edge: importing gradtx (or gradtx.interop) imports no torch."""
    import subprocess
    import sys

    code = "import sys, gradtx, gradtx.interop; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bfloat16_round_trip():
    """bfloat16 params (no NumPy form in torch) convert exactly, both ways."""
    tensors = [torch.tensor([0.5, -1.0, 2.0], dtype=torch.bfloat16)]
    theta = {"w": jnp.asarray([0.5, -1.0, 2.0], jnp.bfloat16)}
    opt = torch.optim.Rprop(tensors)
    for sign in (1, 1, -1):
        tensors[0].grad = sign * torch.tensor([1.0, -2.0, 3.0], dtype=torch.bfloat16)
        opt.step()
    state = from_torch(opt.state_dict(), gradtx.rprop(), theta)
    step_sizes = gradtx.rprop_step_sizes(state)
    assert step_sizes["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(step_sizes["w"], np.float32),
        opt.state[tensors[0]]["step_size"].float().numpy(),
    )
    back = to_torch(state, theta, opt)["state"][0]
    assert back["step_size"].dtype == torch.bfloat16
    assert torch.equal(back["step_size"], opt.state[tensors[0]]["step_size"])
    assert torch.equal(back["prev"], torch.sign(opt.state[tensors[0]]["prev"]))
