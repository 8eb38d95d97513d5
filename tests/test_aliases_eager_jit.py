"""Eager and jitted updates of the aliases (``gradtx/_aliases.py``) agree bit for bit
for every setting, ``maximize`` included (``rmsprop(maximize=True)`` differed by 1-2 ulp in
most float32 steps when its sign was a block of its own), over a space of settings,
param dtypes and gradients drawn by hypothesis."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

STEPS = 4


def _trajectories(tx, dtype, seed, value=False):
    rng = np.random.default_rng(seed)

    def draw(shape, scale=1.0):
        x = rng.normal(size=shape) * scale
        if jnp.issubdtype(dtype, jnp.complexfloating):
            x = x + 1j * rng.normal(size=shape) * scale
        return jnp.asarray(x, dtype)

    params0 = {"w": draw((6, 3)), "b": draw((3,), 3.0)}
    grads = [jax.tree.map(lambda p: draw(p.shape, 0.5), params0) for _ in range(STEPS)]
    losses = [jnp.asarray(rng.normal(), jnp.float32) for _ in range(STEPS)]

    def update(g, state, params, loss):
        return tx.update(g, state, params, **({"value": loss} if value else {}))

    out = []
    for fn in (update, jax.jit(update)):
        params, state, history = params0, tx.init(params0), []
        for g, loss in zip(grads, losses):
            u, state = fn(g, state, params, loss)
            # applied alike in both runs: a jitted p + u may fuse -lr * x into an FMA
            params = gradtx.apply_updates(params, u)
            history.append((u, state))
        out.append(history)
    return out


DTYPES = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16, jnp.complex64])


@settings(max_examples=24, deadline=None)
@given(
    lr=st.sampled_from([1e-3, 0.1]),
    alpha=st.sampled_from([0.0, 0.9, 0.99, 1.0]),
    eps=st.sampled_from([0.0, 1e-8, 1e-3]),
    weight_decay=st.sampled_from([0.0, 0.05, "schedule"]),
    momentum=st.sampled_from([0.0, 0.9]),
    centered=st.booleans(),
    maximize=st.booleans(),
    clamp=st.booleans(),
    acc=st.sampled_from([None, jnp.float32]),
    dtype=DTYPES,
    seed=st.integers(0, 3),
)
def test_rmsprop_eager_equals_jit(
    lr, alpha, eps, weight_decay, momentum, centered, maximize, clamp, acc, dtype, seed
):
    if weight_decay == "schedule":  # exact values: the schedules' own eager == jit is
        # theirs to pin (linear_schedule(0.1, 0.0, 3)(3) is 0.0 eagerly, -3e-9 jitted)
        weight_decay = gradtx.piecewise_constant_schedule(0.1, {2: 0.5})
    tx = gradtx.rmsprop(
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
        maximize=maximize,
        clamp_variance=clamp and centered,
        accumulator_dtype=acc,
    )
    eager, jitted = _trajectories(tx, dtype, seed)
    chex.assert_trees_all_equal(eager, jitted)


@settings(max_examples=16, deadline=None)
@given(
    lr=st.sampled_from([1e-3, 0.1]),
    etas=st.sampled_from([(0.5, 1.2), (0.3, 2.0)]),
    variant=st.sampled_from(["irprop-", "rprop-", "rprop+", "irprop+"]),
    maximize=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.complex64]),
    seed=st.integers(0, 3),
)
def test_rprop_eager_equals_jit(lr, etas, variant, maximize, dtype, seed):
    tx = gradtx.rprop(lr, etas, (1e-6, 1.0), maximize=maximize, variant=variant)
    eager, jitted = _trajectories(tx, dtype, seed, value=variant == "irprop+")
    chex.assert_trees_all_equal(eager, jitted)
