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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    tensors = [torch.ones(4, dtype=torch.float64), tensors[1]]  # no order explains it
    opt = _stepped(torch.optim.RMSprop, tensors)
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


# ----------------------------------------------------------------------------------------
# Dict order, states for other shapes, values gradtx cannot hold (issue 25)
# ----------------------------------------------------------------------------------------

_KEY = st.from_regex(r"[a-z]{1,3}(\.[a-z]{1,2})?", fullmatch=True)
_SHAPE = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=st.dictionaries(_KEY, _SHAPE, min_size=2, max_size=4))
def test_a_dict_in_torchs_order_is_refused_saying_why_or_matched_by_names(shapes):
    """params as a dict in torch's registration order: JAX sorts its keys. Where the
    shapes then disagree, both directions say that order is the likely cause; with
    names=torch's names both directions match by name, value for value."""
    names = list(shapes)  # torch's order: the order the dict was written in
    theta = {k: jnp.full(s, 0.5, jnp.float32) for k, s in shapes.items()}
    tensors = [torch.full(s, 0.5, dtype=torch.float32) for s in shapes.values()]
    opt = torch.optim.RMSprop(tensors, lr=1e-2)
    for i, t in enumerate(tensors):
        t.grad = torch.full_like(t, 0.1 * (i + 1))
    opt.step()
    tx = alias_from_torch(opt)
    sorted_shapes = [shapes[k] for k in sorted(names)]
    if sorted_shapes != list(shapes.values()):
        with pytest.raises(ValueError, match=r"sorted key.*names=\[n for n, _ in model"):
            from_torch(opt.state_dict(), tx, theta)
        with pytest.raises(ValueError, match=r"sorted key.*names=\[n for n, _ in model"):
            to_torch(tx.init(theta), theta, opt)
    state = from_torch(opt.state_dict(), tx, theta, names=names)
    for k, t in zip(names, tensors):
        np.testing.assert_array_equal(state[0].nu[k], opt.state[t]["square_avg"].numpy())
    back = to_torch(state, theta, opt, names=names)["state"]
    for i, t in enumerate(tensors):
        assert torch.equal(back[i]["square_avg"], opt.state[t]["square_avg"])


@pytest.mark.parametrize("kind", ["Rprop", "RMSprop"])
@pytest.mark.parametrize(
    "built_for,message",
    [
        (
            {"w": jnp.zeros((16, 4), jnp.float32)},
            r"params path \['w'\].*float32\[16, 4\].*float32\[16\]",
        ),
        ({"w": jnp.zeros(16, jnp.float64)}, r"params path \['w'\].*float64\[16\].*float32"),
    ],
)
def test_to_torch_refuses_a_state_built_for_other_params(kind, built_for, message):
    theta = {"w": jnp.zeros(16, jnp.float32)}
    opt = getattr(torch.optim, kind)([torch.zeros(16)], lr=1e-2)
    tx = alias_from_torch(opt)
    with pytest.raises(ValueError, match="opt_state was built for other params: .*" + message):
        to_torch(tx.init(built_for), theta, opt)


def _rprop_state_dict(step_size, prev, step_sizes=(1e-6, 50.0)):
    w = torch.ones(len(step_size), requires_grad=True)
    opt = torch.optim.Rprop([w], lr=1e-2, step_sizes=step_sizes)
    w.grad = torch.ones_like(w)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step_size"] = torch.tensor(step_size, dtype=torch.float32)
    sd["state"][0]["prev"] = torch.tensor(prev, dtype=torch.float32)
    return sd, {"w": jnp.ones(len(step_size), jnp.float32)}


@pytest.mark.parametrize(
    "step_size,prev,message",
    [
        ([0.1, np.nan], [1.0, 1.0], r"path \['w'\]\): state\['step_size'\] holds 1 NaN"),
        ([-0.5, 0.1], [1.0, 1.0], r"state\['step_size'\] holds 1 negative"),
        ([0.1, 1e30], [1.0, 1.0], r"holds 1e\+30 .*cannot hold as it is"),
        ([0.1, np.inf], [1.0, 1.0], r"holds inf .*cannot hold as it is"),
        ([0.1, 0.1], [np.nan, 1.0], r"state\['prev'\] holds NaN"),
    ],
)
def test_from_torch_refuses_step_sizes_gradtx_would_change(step_size, prev, message):
    sd, theta = _rprop_state_dict(step_size, prev)
    with pytest.raises(ValueError, match=message):
        from_torch(sd, alias_from_torch(sd), theta)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(
        st.floats(float(np.float32(1e-6)), 50.0, width=32) | st.just(0.0), min_size=1, max_size=8
    ),
    signs=st.data(),
)
def test_from_torch_keeps_every_step_size_rprop_can_reach(sizes, signs):
    """Any step size in [0, max] (0: reachable with step_sizes' minimum 0) and any
    previous gradient come through exactly (the sign for prev)."""
    prev = signs.draw(
        st.lists(st.floats(-2, 2, width=32), min_size=len(sizes), max_size=len(sizes))
    )
    sd, theta = _rprop_state_dict(sizes, prev, step_sizes=(0.0, 50.0))
    state = from_torch(sd, alias_from_torch(sd), theta)
    np.testing.assert_array_equal(gradtx.rprop_step_sizes(state)["w"], np.float32(sizes))
    np.testing.assert_array_equal(gradtx.rprop_prev_signs(state)["w"], np.sign(prev))
