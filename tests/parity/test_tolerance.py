"""The tolerance of every parity test (``_tolerance.tolerance``): its arithmetic, its nudge,
and that it stays tight enough to catch real bugs on the least well conditioned cases of
the suite, where it is loosest."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests import _runners as r
from tests import _tolerance as h
from tests._runners import run_gradtx, run_torch, torch_optimizer


def test_tolerance_is_factor_times_d_self_above_the_floor():
    eps32 = float(np.finfo(np.float32).eps)
    assert h.tolerance("float32", 20, 0.0).value == 20 * h.FLOOR_ULPS * eps32
    assert h.tolerance("float32", 20, 1e-6).value == h.FACTOR * 1e-6
    assert h.tolerance("float64", 100, 1e-13).value == h.FACTOR * 1e-13
    with pytest.raises(AssertionError, match="too ill-conditioned"):
        h.tolerance("float32", 20, 1e-4)  # 1.6e-3 > sqrt(eps32)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.float32, np.float64])
def test_nudge_is_one_ulp_up(dtype):
    x = np.asarray([0.0, -1.0, 0.3, 1e3], dtype)
    for leaf in (x, jnp.asarray(x)):
        up = h.nudge(leaf)
        assert type(up) is type(leaf) and up.dtype == leaf.dtype
        up = np.asarray(up)
        assert np.all(up.astype(np.float64) > x.astype(np.float64))  # up, by one ulp:
        assert np.all(np.nextafter(up, np.asarray(-np.inf, x.dtype)) == x)


def test_nudge_complex_both_parts_and_leaves_others_alone():
    z = np.asarray(1.0 + 2.0j, np.complex64)
    up = h.nudge({"z": z, "n": np.int32(3), "f": 0.5})
    assert up["z"].dtype == np.complex64 and up["z"].shape == ()
    assert up["z"].real == np.nextafter(np.float32(1), np.float32(2))
    assert up["z"].imag == np.nextafter(np.float32(2), np.float32(3))
    assert up["n"] == 3 and up["f"] == 0.5


# ----------------------------------------------------------------------------------------
# Tight enough: a real bug gives an error far above the tolerance
# ----------------------------------------------------------------------------------------


def _tolerance_and_error(prec, theirs, nudged, ours, steps, dtypes):
    d_self = h.self_distance(dtypes, theirs, nudged)[prec]
    return h.tolerance(prec, steps, d_self).value, h.errors_by_precision(dtypes, ours, theirs)[prec]


def _flat(run):
    return [[np.asarray(x) for x in jax.tree.leaves(t)] for t in run]


def test_torch_mlp_case_catches_eps_inside_the_root_and_no_centering():
    """test_aliases' loosest float32 case (the chaotic MLP, centered, eps=1e-6): torch's
    rule against the same chain with eps inside the root, or without centering."""
    from tests.test_aliases import RMSPROP_CONFIGS, grad_fn_of, mlp_problem

    cfg = RMSPROP_CONFIGS[4]
    assert cfg["eps"] == 1e-6 and cfg["centered"]
    params, loss = mlp_problem(np.float32)
    grad_fn = grad_fn_of(loss, False)
    theirs = run_torch(torch_optimizer(torch.optim.RMSprop, **cfg), params, grad_fn, 20)
    nudged = [
        run_torch(torch_optimizer(torch.optim.RMSprop, **cfg), params, grad_fn, 20, nudge=n)
        for n in h.NUDGES
    ]

    def chain(eps_in_sqrt, centered=True):
        normaliser = gradtx.scale_by_stddev if centered else gradtx.scale_by_rms
        return gradtx.chain(
            gradtx.add_decayed_weights(cfg["weight_decay"]),
            normaliser(decay=cfg["alpha"], eps=cfg["eps"], eps_in_sqrt=eps_in_sqrt),
            gradtx.trace(cfg["momentum"]),
            gradtx.scale_by_learning_rate(cfg["lr"]),
        )

    dtypes = [x.dtype for x in jax.tree.leaves(params)]
    errs = {}
    for name, tx in [
        ("right", chain(False)),
        ("eps inside the root", chain(True)),
        ("not centered", chain(False, centered=False)),
    ]:
        ours, _ = run_gradtx(tx, params, grad_fn, 20)
        tol, errs[name] = _tolerance_and_error(
            "float32", _flat(theirs), [_flat(n) for n in nudged], _flat(ours), 20, dtypes
        )
    assert errs["right"] <= tol
    assert errs["eps inside the root"] > 10 * tol, (errs, tol)
    assert errs["not centered"] > 10 * tol, (errs, tol)


def test_keras_centered_case_catches_eps_outside_the_root():
    """The suite's loosest float32 case (Keras, centered, rho=0.5, eps=1e-2): Keras's rule
    against the same chain with eps outside the root (torch's placement)."""
    from .recipes import keras_rmsprop
    from .test_keras import STEPS, run_keras

    os.environ["KERAS_BACKEND"] = "jax"  # as test_keras's module fixture does
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()

    kw = {"rho": 0.5, "epsilon": 1e-2, "centered": True}
    prob = r.small_problem(STEPS)
    theirs, *nudged = run_keras(keras, kw, [prob, *(prob.nudged(n) for n in h.NUDGES)], STEPS)
    lr = float(np.float32(0.01))
    outside = gradtx.chain(
        gradtx.scale_by_stddev(decay=0.5, eps=1e-2, eps_in_sqrt=False),
        gradtx.scale_by_learning_rate(lr),
    )
    errs = {}
    for name, tx in [("right", keras_rmsprop(lr, **kw)), ("eps outside the root", outside)]:
        ours = r.run_gradtx_eager(tx, prob, STEPS)
        tol, errs[name] = _tolerance_and_error("float32", theirs, nudged, ours, STEPS, prob.dtypes)
    assert errs["right"] <= tol
    assert errs["eps outside the root"] > 10 * tol, (errs, tol)


def test_optax_centered_case_catches_a_missing_bias_correction():
    """optax.rmsprop's loosest float32 case (centered, bias-corrected, eps in the root):
    optax's rule against the same chain without the bias correction."""
    from .optax_cases import PARAMS, leaves_of, trajectories, trajectory
    from .recipes import optax_rmsprop

    kw = {"learning_rate": 0.01, "centered": True, "bias_correction": True}
    # optax's plain run and its nudged ones (h.NUDGES), side by side
    theirs, *nudged = map(leaves_of, trajectories(optax.rmsprop(**kw), zero_first=True))
    dtypes = [x.dtype for x in jax.tree.leaves(PARAMS)]
    errs = {}
    for name, tx in [
        ("right", optax_rmsprop(**kw)),
        ("no bias correction", optax_rmsprop(**{**kw, "bias_correction": False})),
    ]:
        ours = leaves_of(trajectory(tx, zero_first=True))
        tol, errs[name] = _tolerance_and_error("float32", theirs, nudged, ours, 30, dtypes)
    assert errs["right"] <= tol
    assert errs["no bias correction"] > 10 * tol, (errs, tol)
