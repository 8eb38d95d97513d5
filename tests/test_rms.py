"""``gradtx.rmsprop(weight_decay=...)`` computes the L2 penalty inside its normaliser's
rule (the documented ``weight_decay=`` of ``scale_by_rms``/``scale_by_stddev``), so
that XLA keeps no temporary buffer for g + wd * theta (``tests/test_donation.py``
checks that part). Here: it is the chain its docstring states, block for block, bit
for bit: the same state tree and the same numbers as ``scale(-1) ->
add_decayed_weights -> scale_by_stddev | scale_by_rms -> trace ->
scale_by_learning_rate`` built from the public blocks, in every dtype, jitted and
eager, with the weight decay a number or an injected (traced) hyperparameter."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests import _tolerance as h

STEPS = 5


def _explicit_chain(lr, alpha, eps, weight_decay, momentum, centered, maximize, acc):
    """torch's RMSprop from the public blocks, as ``gradtx.rmsprop``'s docstring lists."""
    blocks = [gradtx.scale(-1.0)] if maximize else []
    blocks.append(gradtx.add_decayed_weights(weight_decay))
    if centered:
        blocks.append(gradtx.scale_by_stddev(alpha, eps, eps_in_sqrt=False, accumulator_dtype=acc))
    else:
        blocks.append(gradtx.scale_by_rms(alpha, eps, eps_in_sqrt=False, accumulator_dtype=acc))
    if not (isinstance(momentum, float) and momentum == 0.0):  # an array: traced
        blocks.append(gradtx.trace(momentum, accumulator_dtype=acc))
    blocks.append(gradtx.scale_by_learning_rate(lr))
    return gradtx.chain(*blocks)


# (dtype of the params, accumulator_dtype)
DTYPES = [
    (jnp.float32, None),
    (jnp.float64, None),
    (jnp.bfloat16, None),
    (jnp.bfloat16, jnp.float32),
    (jnp.float16, None),
    (jnp.complex64, None),
]
CONFIGS = list(itertools.product([0.0, 0.9], [False, True], [False, True]))


def _problem(dtype, seed=0):
    """Params and a gradient sequence of mixed scales (the penalty and the gradient
    both matter), in ``dtype``."""
    rng = np.random.default_rng(seed)

    def draw(shape, scale=1.0):
        x = rng.normal(size=shape) * scale
        if jnp.issubdtype(dtype, jnp.complexfloating):
            x = x + 1j * rng.normal(size=shape) * scale
        return jnp.asarray(x, dtype)

    params = {"w": draw((33, 7)), "b": draw((7,), 10.0), "s": draw(())}
    grads = [
        jax.tree.map(lambda p, i=i: draw(p.shape, 0.1 * (i + 1)), params) for i in range(STEPS)
    ]
    return params, grads


def _run(tx, params, grads, jit):
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    history = []
    for g in grads:
        params, state = step(params, state, g)
        history.append((params, state))
    return history


@pytest.mark.parametrize("dtype,acc", DTYPES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize(
    "momentum,centered,maximize", CONFIGS, ids=[f"mom={m},cen={c},max={x}" for m, c, x in CONFIGS]
)
def test_weight_decay_inside_the_normaliser_is_the_chain_bit_for_bit(
    dtype, acc, momentum, centered, maximize
):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs jax_enable_x64")
    args = (3e-3, 0.9, 1e-8, 0.05, momentum, centered, maximize, acc)
    ours = gradtx.rmsprop(*args[:6], maximize=maximize, accumulator_dtype=acc)
    theirs = _explicit_chain(*args)
    params, grads = _problem(dtype)
    if acc is None:
        for jit in (True, False):
            a, b = _run(ours, params, grads, jit), _run(theirs, params, grads, jit)
            chex.assert_trees_all_equal_structs(a, b)
            chex.assert_trees_all_equal(a, b)
    else:
        # Averages wider than the params: g + wd * theta is rounded to the param's dtype
        # and then widened, as the blocks state. The jitted chain need not round it (XLA
        # may keep a fused bfloat16 expression in float32); gradtx stores it, so its
        # jitted and eager steps give the eager chain's numbers.
        reference = _run(theirs, params, grads, False)
        for jit in (True, False):
            chex.assert_trees_all_equal(_run(ours, params, grads, jit), reference)


@pytest.mark.parametrize("centered", [False, True])
def test_injected_weight_decay_matches_the_chain(centered):
    """``inject_hyperparams`` hands the weight decay in as a traced array: the penalty
    then multiplies by that array, still without a block of its own. Against the chain
    of blocks under the same injection, to the suite's tolerance (``_tolerance``), not
    bit for bit: with the decay traced, LLVM fuses a different product of the average's
    multiply-add in the two programs (``_rms_math.ema_sq``), one rounding of each ν."""
    hyper = {"learning_rate": 3e-3, "alpha": 0.9, "weight_decay": 0.05, "momentum": 0.9}

    def explicit(learning_rate, alpha, weight_decay, momentum):
        args = (learning_rate, alpha, 1e-8, weight_decay, momentum, centered, False, None)
        return _explicit_chain(*args)

    ours = gradtx.inject_hyperparams(gradtx.rmsprop)(**hyper, centered=centered)
    theirs = gradtx.inject_hyperparams(explicit)(**hyper)
    params, grads = _problem(jnp.float32)

    def trajectory(tx, params, grads):  # params and the inner state, step by step
        return [(p, s.inner_state) for p, s in _run(tx, params, grads, True)]

    reference = trajectory(theirs, params, grads)
    nudged = [
        trajectory(theirs, h.nudge(params), grads),
        trajectory(theirs, params, [h.nudge(g) for g in grads]),
    ]
    h.check_trajectories(
        "gradtx chain of blocks",
        f"rmsprop injected weight_decay centered={centered}",
        trajectory(ours, params, grads),
        reference,
        nudged,
        STEPS,
    )


def test_scheduled_weight_decay_keeps_its_block():
    """A schedule for the weight decay keeps the ``add_decayed_weights`` block (its step
    count is state): the alias is then the explicit chain object for object."""
    schedule = gradtx.linear_schedule(0.1, 0.0, 4)
    tx = gradtx.rmsprop(1e-2, weight_decay=schedule, momentum=0.9)
    params, grads = _problem(jnp.float32)
    state = tx.init(params)
    assert type(state[0]).__name__ == "WeightDecayScheduleState"
    theirs = _explicit_chain(1e-2, 0.99, 1e-8, schedule, 0.9, False, False, None)
    chex.assert_trees_all_equal(_run(tx, params, grads, True), _run(theirs, params, grads, True))
