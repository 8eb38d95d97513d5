"""gradtx.flatten: optax.flatten's semantics (checked live), and the same numbers as the
unflattened transform for elementwise rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _tree(seed, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.standard_normal((3, 4)), dtype),
        "b": jnp.asarray(rng.standard_normal(4), dtype),
        "s": jnp.asarray(rng.standard_normal(()), dtype),
    }


def _run(tx, steps=6, value=False, dtype=jnp.float32):
    params = _tree(0, dtype)
    state = tx.init(params)
    out = []
    for t in range(steps):
        kw = {"value": jnp.float32(5.0 - t % 2)} if value else {}
        u, state = jax.jit(tx.update)(_tree(t + 1, dtype), state, params, **kw)
        params = gradtx.apply_updates(params, u)
        out.append(u)
    return out, state


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.rprop(0.02),
        lambda: gradtx.rmsprop(0.01, momentum=0.9, centered=True),
        lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.scale_by_rms()),
    ],
    ids=["rprop", "rmsprop", "clip_by_global_norm+rms"],
)
def test_same_updates_and_state_as_optax_flatten(make):
    ours, o_state = _run(gradtx.flatten(make()))
    theirs, t_state = _run(optax.flatten(make()))
    _assert_equal(ours, theirs)
    _assert_equal(o_state, t_state)


@pytest.mark.parametrize("variant", gradtx.RPROP_VARIANTS)
def test_elementwise_rules_give_the_same_numbers_flattened(variant):
    """Rprop is elementwise: flattening changes the state's layout, not a number."""
    ours, state = _run(gradtx.flatten(gradtx.rprop(0.02, variant=variant)), value=True)
    plain, _ = _run(gradtx.rprop(0.02, variant=variant), value=True)
    _assert_equal(ours, plain)
    assert [x.shape for x in jax.tree.leaves(gradtx.rprop_step_sizes(state))] == [(17,)]


def test_a_flat_param_buffer_passes_through():
    flat = jnp.linspace(-1.0, 1.0, 10, dtype=jnp.float32)
    tx, plain = gradtx.flatten(gradtx.rprop(0.1)), gradtx.rprop(0.1)
    u, _ = tx.update(flat, tx.init(flat), flat)
    v, _ = plain.update(flat, plain.init(flat), flat)
    _assert_equal(u, v)


def test_each_update_keeps_its_leaf_dtype():
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    tx = gradtx.flatten(gradtx.rmsprop(0.1))
    u, _ = tx.update(params, tx.init(params), params)
    assert u["a"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32


def test_empty_tree():
    tx = gradtx.flatten(gradtx.rmsprop(0.1))
    u, _ = tx.update({}, tx.init({}), {})
    assert u == {}
