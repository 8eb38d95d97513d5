"""MultiSteps (gradient accumulation, gradtx/_accumulation.py) against independent
references: the equivalent large-batch run, Dragon's documented sum_grad example and
optax.MultiSteps wrapping the same inner transform."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

import gradtx
from tests import _tolerance as h
from tests._counts import NOT_A_COUNT, SPELLINGS
from tests.least_squares import grad_fn, params0, run

# MultiSteps
# --------------------------------------------------------------------------------------


def test_k_micro_batches_equal_one_large_batch():
    k, steps = 4, 6
    inner = gradtx.rmsprop(0.02, momentum=0.9, centered=True, weight_decay=1e-3)
    acc = gradtx.MultiSteps(inner, k, reduce="mean")
    rows = [slice(8 * i, 8 * (i + 1)) for i in range(k)]

    big_p = jax.tree.map(jnp.asarray, params0())
    big_s = inner.init(big_p)
    p, s = big_p, acc.init(big_p)
    update = jax.jit(acc.update)
    for _ in range(steps):
        for i in range(k):
            g = jax.tree.map(jnp.asarray, grad_fn(p, rows[i]))
            u, s = update(g, s, p)
            if i < k - 1:
                assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(u))
                assert not acc.has_updated(s)
            p = gradtx.apply_updates(p, u)
        assert acc.has_updated(s)
        u, big_s = inner.update(jax.tree.map(jnp.asarray, grad_fn(big_p)), big_s, big_p)
        big_p = gradtx.apply_updates(big_p, u)
        chex.assert_trees_all_close((p, s.inner_opt_state), (big_p, big_s), rtol=1e-12, atol=1e-15)
    assert int(s.gradient_step) == steps


def test_sum_reproduces_dragons_sum_grad_example():
    """Dragon's Optimizer.sum_grad docs: x = ones(1); SGD(lr=0.1); per epoch, three times
    y = x + 1, y.backward(), sum_grad(); then step(). After two epochs x is 0.4."""
    tx = gradtx.MultiSteps(gradtx.scale_by_learning_rate(0.1), 3, reduce="sum")
    x = {"x": jnp.ones(1)}
    state = tx.init(x)
    for _ in range(2):
        for _ in range(3):
            g = jax.grad(lambda p: jnp.sum(p["x"] + 1))(x)
            u, state = tx.update(g, state, x)
            x = gradtx.apply_updates(x, u)
    np.testing.assert_allclose(x["x"], [0.4], rtol=1e-15)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_same_numbers_as_optax_multisteps(reduce):
    k = 3
    inner = gradtx.rmsprop(0.02, momentum=0.5)
    ours = gradtx.MultiSteps(inner, k, reduce=reduce)
    theirs = optax.MultiSteps(inner, k, use_grad_mean=reduce == "mean")
    a, sa = run(ours, 12, dtype=np.float32)
    b, sb = run(theirs, 12, dtype=np.float32)
    nudged = [run(theirs, 12, dtype=np.float32, nudge=n)[0] for n in h.NUDGES]
    h.check_trajectories("optax.MultiSteps", reduce, a, b, nudged, 12)
    assert int(sa.gradient_step) == int(sb.gradient_step) == 4


def test_every_k_schedule_varies_the_batch_size():
    k_of = gradtx.piecewise_constant_schedule(1, {2: 3})  # k = 1, 1, then 3 from step 2
    tx = gradtx.MultiSteps(gradtx.scale(1.0), lambda step: k_of(step).astype(jnp.int32))
    g = {"x": jnp.ones(2)}
    state = tx.init(g)
    emitted = []
    for _ in range(8):
        u, state = jax.jit(tx.update)(g, state)
        emitted.append(float(u["x"][0]))
    assert emitted == [1, 1, 0, 0, 1, 0, 0, 1]


def test_multisteps_bad_arguments():
    with pytest.raises(ValueError, match="reduce"):
        gradtx.MultiSteps(gradtx.scale(1.0), 2, reduce="max")
    with pytest.raises(ValueError, match="every_k_schedule"):
        gradtx.MultiSteps(gradtx.scale(1.0), 0)


def test_every_k_of_any_integer_spelling_is_that_int():
    """``every_k_schedule`` as a schedule's step counts: any integer-valued number (an
    int, a float, a NumPy or JAX scalar) steps as ``int(k)`` does (all in one program)."""
    g = {"x": jnp.arange(1.0, 3.0)}
    txs = [gradtx.MultiSteps(gradtx.scale(-1.0), spell(k)) for k in (1, 3) for spell in SPELLINGS]

    def run(tx):
        state, out = tx.init(g), []
        for _ in range(7):
            u, state = tx.update(g, state)
            out.append(u)
        return out

    runs = jax.jit(lambda: [run(tx) for tx in txs])()
    for i, r in enumerate(runs):
        chex.assert_trees_all_equal(r, runs[0 if i < len(SPELLINGS) else len(SPELLINGS)])
    assert not np.array_equal(runs[0][1]["x"], runs[-1][1]["x"])  # k = 1 and 3 differ


@settings(max_examples=30, deadline=None)
@given(bad=NOT_A_COUNT)
def test_every_k_refuses_what_is_not_an_integer_by_name(bad):
    """Every other value is refused by name at construction (a traced one with a
    TypeError: it is read in Python)."""
    with pytest.raises(ValueError, match="Invalid every_k_schedule"):
        gradtx.MultiSteps(gradtx.scale(1.0), bad)
    with pytest.raises(TypeError, match=r"every_k_schedule.*must be concrete"):
        jax.jit(lambda k: gradtx.MultiSteps(gradtx.scale(1.0), k))(2)


# --------------------------------------------------------------------------------------
