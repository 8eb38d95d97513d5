"""The engine's refusals, for every transform: integer gradients, gradients shaped unlike
the params (the message names the gradients), and ``update`` before ``init``."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests.test_trees import STATEFUL

STATELESS = {
    "scale": lambda: gradtx.scale(0.5),
    "scale_by_learning_rate": lambda: gradtx.scale_by_learning_rate(0.1),
    "clip": lambda: gradtx.clip(1.0),
    "clip_by_block_norm": lambda: gradtx.clip_by_block_norm(1.0),
    "clip_by_block_rms": lambda: gradtx.clip_by_block_rms(1.0),
    "clip_by_global_norm": lambda: gradtx.clip_by_global_norm(1.0),
    "add_decayed_weights": lambda: gradtx.add_decayed_weights(0.1),
}
# identity, zero_nans and set_to_zero compute nothing that an integer could truncate:
# they return integer gradients unchanged or zeroed (the right result; set_to_zero is
# how partition freezes integer leaves), so they are not in this list.
ALL = {**STATELESS, **{k: v for k, v in STATEFUL.items() if k != "zero_nans"}}

PARAMS = {"w": jnp.ones(3, jnp.float32), "b": {"c": jnp.ones(2, jnp.float32)}}


@functools.cache
def _built(name):
    tx = ALL[name]()
    return tx, tx.init(PARAMS)


@pytest.mark.parametrize("name", list(ALL))
def test_integer_gradients_are_refused_naming_the_path(name):
    tx, state = _built(name)
    for dtype in ["int8", "int32", "int64", "uint8", "bool"]:
        grads = {"w": jnp.array([1, 0, 1], dtype), "b": {"c": jnp.ones(2, jnp.float32)}}
        with pytest.raises(TypeError, match=rf"updates at path \['w'\] have dtype {dtype}"):
            tx.update(grads, state, PARAMS, value=jnp.asarray(1.0))


def test_a_nested_integer_leaf_is_named_by_its_path():
    grads = {"w": jnp.ones(3, jnp.float32), "b": {"c": jnp.array([1, 0], jnp.int32)}}
    tx = gradtx.rmsprop(0.1)
    with pytest.raises(TypeError, match=r"updates at path \['b'\]\['c'\] have dtype int32"):
        tx.update(grads, tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize("dtype", ["int32", "bool"])
def test_set_to_zero_freezes_integer_leaves(dtype):
    grads = {"ids": jnp.array([3, 0, 1]).astype(dtype)}
    out, _ = gradtx.set_to_zero().update(grads, gradtx.EmptyState())
    assert out["ids"].dtype == grads["ids"].dtype
    np.testing.assert_array_equal(out["ids"], np.zeros(3, dtype))


def test_the_issues_integer_examples():
    """rmsprop returned int32 zeros, rprop raised OverflowError."""
    params = {"w": jnp.ones(2, jnp.float32)}
    grads = {"w": jnp.array([1, -1], jnp.int32)}
    for tx in (gradtx.rmsprop(0.1), gradtx.rprop(0.1)):
        with pytest.raises(TypeError, match=r"updates at path \['w'\] have dtype int32"):
            tx.update(grads, tx.init(params), params)
        with pytest.raises(TypeError, match=r"updates at path \['w'\] have dtype int32"):
            jax.jit(tx.update)(grads, tx.init(params), params)


@pytest.mark.parametrize("name", ALL)
def test_gradients_shaped_unlike_the_params_are_named_as_the_odd_one(name):
    tx, state = _built(name)
    grads = {"w": jnp.ones(4, jnp.float32), "b": {"c": jnp.ones(2, jnp.float32)}}
    try:
        tx.update(grads, state, PARAMS, value=jnp.asarray(1.0))
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("updates at path ['w'] have shape (4,)"), msg
        assert "params there have shape (3,)" in msg or "state" in msg, msg
    else:
        # only a transform that reads neither the params nor a per-leaf state can take it
        assert name in STATELESS and name != "add_decayed_weights", name


def test_the_issues_shape_example():
    params = {"w": jnp.ones(2)}
    tx = gradtx.rmsprop(0.1)
    with pytest.raises(ValueError) as info:
        tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    assert str(info.value).startswith(
        "updates at path ['w'] have shape (3,), but the params there have shape (2,)"
    )
    # without params, the state (made by init for the params) is what the gradients differ from
    with pytest.raises(ValueError, match=r"updates at path \['w'\] have shape \(3,\).*state\.nu"):
        gradtx.scale_by_rms().update({"w": jnp.ones(3)}, gradtx.scale_by_rms().init(params))


def test_a_stateless_transform_takes_none_or_an_empty_state_only():
    g = {"w": jnp.ones(2)}
    for state in (None, (), gradtx.EmptyState()):
        out, _ = gradtx.scale(2.0).update(g, state)
        np.testing.assert_array_equal(out["w"], 2.0 * g["w"])
    with pytest.raises(TypeError, match=r"does not belong.*keeps no state.*ScaleByRmsState"):
        gradtx.scale(2.0).update(g, gradtx.scale_by_rms().init(g))


# ---------------------------------------------------------------------------------------
# An eager update is one compiled program: the one jax.jit(tx.update) runs.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scale_by_rms", "scale_by_rprop", "clip_by_block_rms"])
def test_an_eager_update_is_one_program_and_the_jitted_numbers(name):
    """Called eagerly on a tree of several leaf shapes and dtypes, ``update`` lowers one
    program on its first call and none on the next (the per-leaf rules are traced inside
    it), and gives the numbers of ``jax.jit(tx.update)``, bit for bit."""
    tx = {
        "scale_by_rms": lambda: gradtx.scale_by_rms(0.9, 1e-3),
        "scale_by_rprop": lambda: gradtx.scale_by_rprop(0.01, variant="rprop+"),
        "clip_by_block_rms": lambda: gradtx.clip_by_block_rms(0.5),
    }[name]()
    rng = np.random.default_rng(0)
    shapes = {"w": ((5, 3), np.float32), "b": ((3,), np.float64), "s": ((), np.float32)}
    params = {k: jnp.asarray(rng.normal(size=s), d) for k, (s, d) in shapes.items()}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)]
    grads.append(jax.tree.map(lambda g: -0.5 * g, grads[0]))
    lowered = []

    def count(event, duration, **kw):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    state = eager_state = tx.init(params)
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        per_call = []
        for g in grads:
            before = len(lowered)
            u, eager_state = tx.update(g, eager_state, params)
            per_call.append(len(lowered) - before)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert per_call == [1, 0], per_call
    for g in grads:
        v, state = jax.jit(tx.update)(g, state, params)
    chex.assert_trees_all_equal((u, eager_state), (v, state))
