"""Every gradtx block that shares a name with optax gives optax 0.2.8's numbers, run live
side by side over argument grids (float64 within 1e-12 and float32 within 1e-6, scaled
error over 20 steps). scale_by_rprop differs on purpose: see the last tests."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests.torch_ref import scaled_error


def _grads(dtype, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (3, 4), "b": (4,), "s": ()}
    return [
        {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in shapes.items()} for _ in range(steps)
    ]


def _params(dtype):
    rng = np.random.default_rng(99)
    return {
        k: jnp.asarray(rng.normal(size=s), dtype)
        for k, s in {"w": (3, 4), "b": (4,), "s": ()}.items()
    }


def _outputs(tx, dtype):
    """The stream of updates a transform emits for a fixed stream of gradients."""
    params = _params(dtype)
    state = tx.init(params)
    update = jax.jit(tx.update)
    out = []
    for g in _grads(dtype):
        u, state = update(g, state, params)
        params = jax.tree.map(lambda p, d: p + 0.1 * d, params, u)  # params move too
        out.append(u)
    return out


TOL = {jnp.float64: 1e-12, jnp.float32: 1e-6}
DTYPES = pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])


def _grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*axes.values())]


RMS_GRID = _grid(
    decay=[0.9, 0.99],
    eps=[1e-8, 1e-3],
    initial_scale=[0.0, 0.5],
    eps_in_sqrt=[True, False],
    bias_correction=[False, True],
)


@DTYPES
@pytest.mark.parametrize("kw", RMS_GRID, ids=repr)
def test_scale_by_rms(kw, dtype):
    err = scaled_error(
        _outputs(gradtx.scale_by_rms(**kw), dtype), _outputs(optax.scale_by_rms(**kw), dtype)
    )
    assert err <= TOL[dtype]


# initial_scale > 0 or no bias correction: otherwise the centered variance is g^2 - g^2 on
# the first step, a cancellation whose sign is rounding noise in both libraries.
STDDEV_GRID = [kw for kw in RMS_GRID if kw["initial_scale"] > 0 or not kw["bias_correction"]]


@DTYPES
@pytest.mark.parametrize("kw", STDDEV_GRID, ids=repr)
def test_scale_by_stddev(kw, dtype):
    err = scaled_error(
        _outputs(gradtx.scale_by_stddev(**kw), dtype), _outputs(optax.scale_by_stddev(**kw), dtype)
    )
    assert err <= TOL[dtype]


@DTYPES
@pytest.mark.parametrize("kw", _grid(decay=[0.0, 0.5, 0.9, 0.99], nesterov=[False, True]), ids=repr)
def test_trace(kw, dtype):
    err = scaled_error(_outputs(gradtx.trace(**kw), dtype), _outputs(optax.trace(**kw), dtype))
    assert err <= TOL[dtype]


def test_trace_accumulator_dtype():
    ours = _outputs(gradtx.trace(0.9, accumulator_dtype=jnp.float32), jnp.float64)
    theirs = _outputs(optax.trace(0.9, accumulator_dtype=jnp.float32), jnp.float64)
    assert scaled_error(ours, theirs) <= 1e-6  # the buffer is float32 in both
    assert (
        gradtx.trace(0.9, accumulator_dtype=jnp.float32).init(_params(jnp.float64)).trace["w"].dtype
        == jnp.float32
    )


def _schedule(count):
    return 0.1 * 0.9**count


@DTYPES
@pytest.mark.parametrize("wd", [0.0, 1e-4, 0.1, _schedule], ids=["0", "1e-4", "0.1", "schedule"])
def test_add_decayed_weights(wd, dtype):
    err = scaled_error(
        _outputs(gradtx.add_decayed_weights(wd), dtype),
        _outputs(optax.add_decayed_weights(wd), dtype),
    )
    assert err <= TOL[dtype]


@DTYPES
@pytest.mark.parametrize("s", [-1.0, 0.0, 0.5, 3.0])
def test_scale(s, dtype):
    err = scaled_error(_outputs(gradtx.scale(s), dtype), _outputs(optax.scale(s), dtype))
    assert err <= TOL[dtype]


@DTYPES
@pytest.mark.parametrize(
    "lr", [1e-3, 0.5, _schedule, None], ids=["1e-3", "0.5", "schedule", "None"]
)
@pytest.mark.parametrize("flip_sign", [True, False])
def test_scale_by_learning_rate(lr, flip_sign, dtype):
    ours = _outputs(gradtx.scale_by_learning_rate(lr, flip_sign=flip_sign), dtype)
    theirs = _outputs(optax.scale_by_learning_rate(lr, flip_sign=flip_sign), dtype)
    assert scaled_error(ours, theirs) <= TOL[dtype]


@DTYPES
def test_scale_by_schedule(dtype):
    err = scaled_error(
        _outputs(gradtx.scale_by_schedule(_schedule), dtype),
        _outputs(optax.scale_by_schedule(_schedule), dtype),
    )
    assert err <= TOL[dtype]


@DTYPES
def test_identity_chain_apply_updates(dtype):
    ours = gradtx.chain(
        gradtx.identity(),
        gradtx.trace(0.9),
        gradtx.scale_by_rms(),
        gradtx.add_decayed_weights(0.01),
        gradtx.scale_by_learning_rate(0.1),
    )
    theirs = optax.chain(
        optax.identity(),
        optax.trace(0.9),
        optax.scale_by_rms(),
        optax.add_decayed_weights(0.01),
        optax.scale_by_learning_rate(0.1),
    )
    assert scaled_error(_outputs(ours, dtype), _outputs(theirs, dtype)) <= TOL[dtype]
    p, u = _params(dtype), _grads(dtype)[0]
    jax.tree.map(
        np.testing.assert_array_equal, gradtx.apply_updates(p, u), optax.apply_updates(p, u)
    )


def test_state_layouts_match_optax():
    """Same field names, same trees, as optax's states: tools that look into optax states
    (by field name) find the same things in ours."""
    params = _params(jnp.float32)
    pairs = [
        (gradtx.scale_by_rms(), optax.scale_by_rms()),
        (gradtx.scale_by_rms(bias_correction=True), optax.scale_by_rms(bias_correction=True)),
        (gradtx.scale_by_stddev(), optax.scale_by_stddev()),
        (gradtx.trace(0.9), optax.trace(0.9)),
        (gradtx.scale_by_schedule(_schedule), optax.scale_by_schedule(_schedule)),
    ]
    for ours, theirs in pairs:
        a, b = ours.init(params), theirs.init(params)
        assert a._fields == b._fields
        assert jax.tree.structure(tuple(a)) == jax.tree.structure(tuple(b))


# ---------------------------------------------------------------------------------------
# scale_by_rprop: same arguments and defaults; optax 0.2.8 returns each update one step
# late (and never clips the initial step size). We follow the paper and torch.
# ---------------------------------------------------------------------------------------


def test_scale_by_rprop_same_step_sizes_as_optax_but_optax_returns_them_late():
    dtype = jnp.float64
    kw = {
        "learning_rate": 0.01,
        "eta_minus": 0.5,
        "eta_plus": 1.2,
        "min_step_size": 1e-6,
        "max_step_size": 50.0,
    }
    ours, theirs = gradtx.scale_by_rprop(**kw), optax.scale_by_rprop(**kw)
    params = _params(dtype)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    first = True
    for g in _grads(dtype, steps=30):
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
        # Identical step sizes (the learning rate is inside the bounds, so optax's missing
        # first-step clip does not show).
        jax.tree.map(np.testing.assert_array_equal, s_ours.step_sizes, s_theirs.step_sizes)
        # optax computes this step's update into its state (prev_updates) ...
        jax.tree.map(np.testing.assert_array_equal, u_ours, s_theirs.prev_updates)
        if first:  # ... and returns the previous one: on the first step, nothing.
            assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(u_theirs))
            assert all(float(jnp.abs(x).min()) > 0 for x in jax.tree.leaves(u_ours))
            first = False


def test_scale_by_rprop_clips_the_initial_step_like_torch_not_optax():
    params = {"w": jnp.zeros(3)}
    g = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    tx = gradtx.scale_by_rprop(learning_rate=5.0, max_step_size=1.0)
    u, s = tx.update(g, tx.init(params), params)
    np.testing.assert_array_equal(s.step_sizes["w"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(u["w"], [1.0, -1.0, 1.0])
    o = optax.scale_by_rprop(learning_rate=5.0, max_step_size=1.0)
    _, so = o.update(g, o.init(params), params)
    np.testing.assert_array_equal(so.step_sizes["w"], [5.0, 5.0, 5.0])  # optax: unclipped
