"""An eager ``init`` returns a state whose leaves are distinct buffers, so that a jitted
step donating the state (``donate_argnums``) can run on it: XLA refuses to donate one
buffer twice ("Attempt to donate the same buffer twice")."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

import gradtx

TRANSFORMS = {
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.rmsprop(1e-2), every_k_schedule=2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.rmsprop(1e-2), 3),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1),
    "rprop irprop+": lambda: gradtx.rprop(variant="irprop+"),
    "rmsprop centered": lambda: gradtx.rmsprop(1e-2, momentum=0.9, centered=True),
}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_state_leaves_are_distinct_buffers_and_donatable(name):
    tx = TRANSFORMS[name]()
    params = {"w": jnp.ones(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
    state = tx.init(params)
    pointers = [leaf.unsafe_buffer_pointer() for leaf in jax.tree.leaves(state) if leaf.size]
    assert len(pointers) == len(set(pointers)), "init returned one buffer twice"

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state):
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params, value=jnp.sum(params["w"]))
        return gradtx.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    assert jnp.all(jnp.isfinite(params["w"]))
