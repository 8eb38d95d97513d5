"""``accumulator_dtype``: float32 state for bfloat16 params (``scale_by_rms``,
``scale_by_stddev``, ``trace`` and ``rmsprop``).

The claim tested: with float32 state, a bfloat16-param RMSprop computes the updates of
a float32 RMSprop to within the rounding of its bfloat16 inputs and outputs, at every
one of a few hundred steps of a small model; with bfloat16 state it does not. Both
optimizers are driven along the float32 run's trajectory (its params and gradients,
rounded to bfloat16), so what is compared is the optimizer's own arithmetic: a
free-running bfloat16-param run also rounds every param update, and the resulting
distance is reported, not asserted (``benchmarks/mixed_precision.py``).

The bound, with :math:`u = 2^{-8}` (bfloat16's unit roundoff: 8 significant bits,
round to nearest): the gradient reaches the optimizer rounded,
:math:`\\tilde g = g(1+\\delta)`, :math:`|\\delta| \\le u`; an average of
:math:`\\tilde g^2` kept in float32 is within :math:`(1 \\pm u)^2` of the exact one,
its root within :math:`1 \\pm u`, so :math:`\\tilde g/\\sqrt{\\tilde\\nu}` is within
:math:`2u` (to first order; float32's own rounding is ~:math:`10^{-7}`). The update is
then rounded to bfloat16 (:math:`u`) and multiplied by the learning rate in bfloat16
(the rate rounded, :math:`u`, and the product, :math:`u`): :math:`5u` per element in
all. Momentum and centering add no new rounding of the inputs but can amplify one
step's error (a sum of terms of both signs, :math:`\\nu - \\mu^2`): an element of the
momentum buffer near zero has no useful relative error, so for ``momentum=0.9,
centered=True`` the bound is asserted on the whole update's error
:math:`\\|\\tilde u - u\\| / \\|u\\|` at the median step.

Measured (300 steps): plain, float32 state at most 2.6u per element, bfloat16 state
59u at the median step; centered + momentum, whole-update error 0.7u vs 42u (medians).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

U = 2.0**-8  # bfloat16's unit roundoff: 8 significant bits, round to nearest
BOUND = 5 * U
STEPS = 300


def _mlp(key, sizes=(8, 32, 32, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n), jnp.float32) / np.sqrt(m),
            "b": jnp.zeros(n, jnp.float32),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def _loss(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"] + layer["b"])
    return jnp.mean((h @ params[-1]["w"] + params[-1]["b"] - y) ** 2)


def _bf16(tree):
    return jax.tree.map(lambda a: a.astype(jnp.bfloat16), tree)


def _errors(ours, want):
    """max over elements of |ours - want| / |want| (0 where both are 0), and
    ||ours - want|| / ||want|| over the whole tree."""
    ours = jnp.concatenate([a.astype(jnp.float32).ravel() for a in jax.tree.leaves(ours)])
    want = jnp.concatenate([a.ravel() for a in jax.tree.leaves(want)])
    diff = jnp.abs(ours - want)
    elementwise = jnp.max(jnp.where(want == 0, diff, diff / jnp.abs(want)))
    return jnp.stack([elementwise, jnp.linalg.norm(diff) / jnp.linalg.norm(want)])


def update_errors(steps=STEPS, **kw):
    """Per step: the errors (:func:`_errors`) of the bfloat16-param updates, state in
    bfloat16 ``[:, 0]`` and in float32 ``[:, 1]``, against the float32 run's update,
    along the float32 run's trajectory."""
    ref = gradtx.rmsprop(1e-2, **kw)
    narrow, wide = (
        gradtx.rmsprop(1e-2, **kw),
        gradtx.rmsprop(1e-2, **kw, accumulator_dtype="float32"),
    )
    x = jax.random.normal(jax.random.PRNGKey(1), (256, 8), jnp.float32)
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    p = _mlp(jax.random.PRNGKey(0))
    states = ref.init(p), narrow.init(_bf16(p)), wide.init(_bf16(p))

    def step(carry, _):
        p, states = carry
        g = jax.grad(_loss)(p, x, y)
        u, s = ref.update(g, states[0], p)
        un, sn = narrow.update(_bf16(g), states[1], _bf16(p))
        uw, sw = wide.update(_bf16(g), states[2], _bf16(p))
        errors = jnp.stack([_errors(un, u), _errors(uw, u)])
        return (gradtx.apply_updates(p, u), (s, sn, sw)), errors

    run = jax.jit(lambda p, states: jax.lax.scan(step, (p, states), length=steps)[1])
    return np.asarray(run(p, states))


def test_float32_state_keeps_bfloat16_rmsprop_within_input_rounding():
    errors = update_errors()
    narrow, wide = errors[:, 0, 0], errors[:, 1, 0]  # elementwise
    assert wide.max() <= BOUND, (wide.max(), BOUND)  # every step, every element
    assert np.median(narrow) > BOUND, (np.median(narrow), BOUND)  # bfloat16 state: outside


def test_float32_state_centered_momentum_median_step():
    errors = update_errors(momentum=0.9, centered=True)
    narrow, wide = errors[:, 0, 1], errors[:, 1, 1]  # over the whole tree
    assert np.median(wide) <= BOUND, (np.median(wide), BOUND)
    assert np.median(narrow) > BOUND, (np.median(narrow), BOUND)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: gradtx.scale_by_rms(accumulator_dtype=d),
        lambda d: gradtx.scale_by_rms(bias_correction=True, accumulator_dtype=d),
        lambda d: gradtx.scale_by_stddev(accumulator_dtype=d),
        lambda d: gradtx.trace(0.9, accumulator_dtype=d),
        lambda d: gradtx.rmsprop(1e-2, momentum=0.9, centered=True, accumulator_dtype=d),
    ],
    ids=["scale_by_rms", "scale_by_rms[bias_correction]", "scale_by_stddev", "trace", "rmsprop"],
)
def test_dtypes_of_state_and_updates(make):
    """State in the accumulator dtype (counters stay int32), updates in the param's; the
    default and an accumulator of the param's own dtype are the unchanged rule, bit for
    bit (so torch parity, tested with the default, is untouched)."""
    params = {
        "h": jnp.asarray([0.5, -1.5, 2.0], jnp.bfloat16),
        "z": jnp.asarray([0.5 + 0.25j], jnp.complex64),
    }
    grads = jax.tree.map(lambda p: (p * 3 - 1).astype(p.dtype), params)
    tx = make(jnp.float32)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    for leaf in jax.tree.leaves(state):
        assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
    assert {k: u.dtype for k, u in updates.items()} == {k: p.dtype for k, p in params.items()}

    f32 = jax.tree.map(lambda p: p.astype(jnp.float32), {"h": params["h"]})
    g32 = {"h": grads["h"].astype(jnp.float32)}
    same = [make(d).update(g32, make(d).init(f32), f32) for d in (None, jnp.float32)]
    for a, b in zip(jax.tree.leaves(same[0]), jax.tree.leaves(same[1])):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()


@pytest.mark.parametrize("bad", [jnp.int8, "complex64", "float33", 3])
def test_accumulator_dtype_is_validated(bad):
    for make in (gradtx.scale_by_rms, gradtx.scale_by_stddev, gradtx.rmsprop):
        with pytest.raises(ValueError, match="Invalid accumulator_dtype"):
            make(accumulator_dtype=bad)
    with pytest.raises(ValueError, match="Invalid accumulator_dtype"):
        gradtx.trace(0.9, accumulator_dtype=bad)


def test_inject_hyperparams_keeps_accumulator_dtype_static():
    params = {"h": jnp.asarray([0.5, -1.5], jnp.bfloat16)}
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=1e-2, accumulator_dtype="float32")
    state = tx.init(params)
    assert "accumulator_dtype" not in state.hyperparams
    per_param = [x for x in jax.tree.leaves(state.inner_state) if x.shape == (2,)]
    assert per_param and all(x.dtype == jnp.float32 for x in per_param)


WIDE_BLOCKS = {
    "trace": lambda: gradtx.trace(0.9, accumulator_dtype=jnp.float32),
    "trace_nesterov": lambda: gradtx.trace(0.9, nesterov=True, accumulator_dtype=jnp.float32),
    "scale_by_rms": lambda: gradtx.scale_by_rms(accumulator_dtype=jnp.float32),
    "scale_by_stddev": lambda: gradtx.scale_by_stddev(accumulator_dtype=jnp.float32),
    "scale_by_rprop": lambda: gradtx.scale_by_rprop(0.01, accumulator_dtype=jnp.float32),
}


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", WIDE_BLOCKS)
def test_a_wide_state_reads_its_input_as_the_block_before_rounded_it(name, dtype):
    """Eagerly a block's output is stored in the params' dtype, so a wider block after it
    reads a rounded value; under ``jit`` XLA may keep the fused expression in float32
    (excess precision). The eager and jitted chains agree bit for bit (``rmsprop``'s with
    a scheduled weight decay differed: its ``add_decayed_weights`` block comes first)."""
    tx = gradtx.chain(gradtx.add_decayed_weights(0.05), gradtx.scale(0.3), WIDE_BLOCKS[name]())
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(6, 5)), dtype)}
    grads = [{"w": jnp.asarray(rng.normal(size=(6, 5)), dtype)} for _ in range(4)]

    def run(update):
        state, out = tx.init(params), []
        for g in grads:
            u, state = update(g, state, params)
            out.append((u, state))
        return out

    chex.assert_trees_all_equal(run(tx.update), run(jax.jit(tx.update)))
