"""Edges of ``inject_hyperparams`` / ``set_hyperparams`` (``gradtx/_inject.py``): clear
refusals instead of internal errors, and states a donated step accepts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx


@pytest.mark.parametrize(
    "state",
    [
        gradtx.rmsprop().init({"w": jnp.ones(2)}),
        gradtx.scale_by_rms().init({"w": jnp.ones(2)}),
        (),
        None,
        {"hyperparams": {"learning_rate": 1.0}},
    ],
    ids=["chain", "namedtuple", "empty", "none", "dict"],
)
def test_set_hyperparams_refuses_other_states(state):
    with pytest.raises(TypeError, match="set_hyperparams needs the state of an inject_"):
        gradtx.set_hyperparams(state, learning_rate=1.0)


def test_set_hyperparams_names_a_nested_injected_state():
    inner = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    tx = gradtx.chain(gradtx.scale(1.0), inner)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(TypeError, match=r"holds one at state\[1\]: pass that one"):
        gradtx.set_hyperparams(state, learning_rate=1.0)
    fixed = (state[0], gradtx.set_hyperparams(state[1], learning_rate=1.0))
    assert float(fixed[1].hyperparams["learning_rate"]) == 1.0


@pytest.mark.parametrize("factory", [gradtx.rmsprop, gradtx.rprop])
@pytest.mark.parametrize("spelling", ["lr", "decay"])
def test_inject_names_the_factorys_spelling(factory, spelling):
    """``inject_hyperparams(rmsprop)(lr=...)`` says what ``rmsprop(lr=...)`` says."""
    with pytest.raises(TypeError) as direct:
        factory(**{spelling: 0.5})
    with pytest.raises(TypeError) as injected:
        gradtx.inject_hyperparams(factory)(**{spelling: 0.5})
    assert str(injected.value) == str(direct.value)


def test_inject_unknown_keyword_still_raises():
    with pytest.raises(TypeError, match="unexpected keyword"):
        gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(bogus=1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, None], ids=["strong", "weak"])
def test_one_array_for_two_hyperparameters_survives_donation(dtype):
    """One array object passed for two names (and to set_hyperparams twice) is stored in
    two buffers: a donated step would otherwise be refused ("donate the same buffer
    twice"). Reference: the same step with two separate arrays, undonated."""
    a = jnp.asarray(0.1, dtype)
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.5, 0.25])}
    make = gradtx.inject_hyperparams(gradtx.rmsprop)
    tx = make(learning_rate=a, momentum=a, weight_decay=a)
    ref_tx = make(learning_rate=0.1, momentum=0.1, weight_decay=0.1)
    donated = jax.jit(tx.update, donate_argnums=(1,))
    state, ref_state = tx.init(params), ref_tx.init(params)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves)
    for step in range(3):
        if step == 1:
            b = jnp.asarray(0.2, jnp.float32)
            state = gradtx.set_hyperparams(state, learning_rate=b, momentum=b)
            ref_state = gradtx.set_hyperparams(ref_state, learning_rate=0.2, momentum=0.2)
        u, state = donated(grads, state, params)
        v, ref_state = ref_tx.update(grads, ref_state, params)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)


def test_init_copies_a_key_given_twice():
    """Typed PRNG keys too (inject_hyperparams passes them through)."""

    def factory(learning_rate, key, other_key):
        del key, other_key
        return gradtx.scale_by_learning_rate(learning_rate)

    key = jax.random.key(0)
    state = gradtx.inject_hyperparams(factory)(0.1, key, key).init({"w": jnp.ones(2)})
    assert state.hyperparams["key"] is not state.hyperparams["other_key"]
    jax.jit(lambda s: s, donate_argnums=(0,))(state)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(-1.0, 1.0, width=32), step=st.integers(0, 3))
def test_a_scheduled_value_is_checked_at_every_eager_step_like_the_hyperparameter(lr, step):
    """A schedule's value at a later eager step is accepted or refused exactly as the
    constructor treats the same number; under jit it is not read (no host sync)."""
    sched = lambda count: jnp.where(count < step, 0.1, lr)  # noqa: E731
    params = {"w": jnp.ones(2)}
    try:
        gradtx.rmsprop(float(np.float32(lr)))
        valid = True
    except ValueError:
        valid = False
    if step == 0 and not valid:  # the value at step 0 is refused where it enters
        with pytest.raises(ValueError, match="learning_rate"):
            gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched)
        return
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched)
    state = tx.init(params)
    jitted = jax.jit(tx.update)
    js = state
    for _ in range(step + 1):
        _, js = jitted(params, js, params)  # never refused under jit
    for i in range(step + 1):
        if i == step and not valid:
            with pytest.raises(ValueError, match=rf"learning_rate.*step {step}"):
                tx.update(params, state, params)
            return
        _, state = tx.update(params, state, params)
