"""Every ``accumulator_dtype`` (and ``inject_hyperparams``'s ``hyperparam_dtype``) is
checked for kind, through one validator (``gradtx._validation.accumulator_dtype``):

* integer, bool and complex dtypes are refused at construction, by every constructor;
* a real accumulator for complex leaves keeps their imaginary part: ``MultiSteps`` sums
  them in the complex dtype of its precision; the per-leaf blocks keep pairs of reals;
* ``MultiSteps``'s ``every_k_schedule`` values below 1, not integers or not scalars are
  refused where checking is free (construction, eager steps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

FLOATS = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]
NOT_FLOATS = [
    jnp.int8,
    jnp.int16,
    jnp.int32,
    jnp.int64,
    jnp.uint8,
    jnp.uint32,
    jnp.bool_,
    bool,
    int,
    jnp.complex64,
    jnp.complex128,
    "int32",
    "bool",
]

# every public constructor that takes an accumulator_dtype
WITH_ACCUMULATOR = {
    "trace": lambda d: gradtx.trace(0.9, accumulator_dtype=d),
    "ema": lambda d: gradtx.ema(0.9, accumulator_dtype=d),
    "scale_by_rms": lambda d: gradtx.scale_by_rms(accumulator_dtype=d),
    "scale_by_stddev": lambda d: gradtx.scale_by_stddev(accumulator_dtype=d),
    "rmsprop": lambda d: gradtx.rmsprop(accumulator_dtype=d, momentum=0.9, centered=True),
    "scale_by_rprop": lambda d: gradtx.scale_by_rprop(0.01, accumulator_dtype=d),
    "rprop": lambda d: gradtx.rprop(accumulator_dtype=d),
    "MultiSteps": lambda d: gradtx.MultiSteps(gradtx.identity(), 2, accumulator_dtype=d),
}


def test_every_accumulator_dtype_argument_is_listed():
    """grep's list: a new accumulator_dtype argument must join WITH_ACCUMULATOR."""
    import inspect

    found = set()
    for name in gradtx.__all__:
        obj = getattr(gradtx, name)
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        if "accumulator_dtype" in params:
            found.add(name)
    assert found == set(WITH_ACCUMULATOR)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(WITH_ACCUMULATOR)), bad=st.sampled_from(NOT_FLOATS))
def test_non_real_float_accumulators_are_refused(name, bad):
    with pytest.raises(ValueError, match="Invalid accumulator_dtype"):
        WITH_ACCUMULATOR[name](bad)


@pytest.mark.parametrize("bad", NOT_FLOATS, ids=str)
def test_non_real_float_hyperparam_dtype_is_refused(bad):
    with pytest.raises(ValueError, match="Invalid hyperparam_dtype"):
        gradtx.inject_hyperparams(gradtx.rmsprop, hyperparam_dtype=bad)


@pytest.mark.parametrize("acc", FLOATS, ids=lambda d: jnp.dtype(d).name)
def test_multisteps_keeps_the_imaginary_part(acc):
    """A real accumulator for complex gradients sums in the complex dtype of its
    precision (complex64 below float64): the mean of k complex gradients, not of their
    real parts."""
    if acc == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs jax_enable_x64")
    params = {"z": jnp.zeros(3, jnp.complex64), "r": jnp.zeros(2, jnp.float32)}
    grads = [
        {"z": jnp.asarray([0.5 + 0.5j, -1j, 2.0], jnp.complex64), "r": jnp.ones(2)},
        {"z": jnp.asarray([0.25 - 1.5j, 1.0, 1j], jnp.complex64), "r": jnp.ones(2)},
    ]
    tx = gradtx.MultiSteps(gradtx.identity(), 2, accumulator_dtype=acc)
    state = tx.init(params)
    want = np.complex128 if jnp.dtype(acc).itemsize == 8 else np.complex64
    assert state.acc_grads["z"].dtype == want
    assert state.acc_grads["r"].dtype == jnp.dtype(acc)
    for update in (tx.update, jax.jit(tx.update)):
        s = state
        for g in grads:
            u, s = update(g, s, params)
        mean = (np.asarray(grads[0]["z"]) + np.asarray(grads[1]["z"])) / 2
        np.testing.assert_allclose(u["z"], mean, rtol=1e-6)
        assert u["z"].dtype == jnp.complex64


@pytest.mark.parametrize("name", ["trace", "ema", "scale_by_rms", "scale_by_stddev"])
def test_blocks_keep_complex_leaves_as_real_pairs(name):
    """The per-leaf blocks keep a complex leaf's state as pairs of reals: a float32
    accumulator for complex64 params gives the numbers of the default (the param's)."""
    params = {"z": jnp.asarray([0.5 + 0.5j, -1.0 + 2j], jnp.complex64)}
    grads = {"z": jnp.asarray([1.0 - 0.5j, 0.25j], jnp.complex64)}
    same = []
    for acc in (None, jnp.float32):
        tx = WITH_ACCUMULATOR[name](acc)
        state = tx.init(params)
        for _ in range(2):
            u, state = tx.update(grads, state, params)
        same.append(u["z"])
    np.testing.assert_array_equal(same[0], same[1])
    assert np.all(np.asarray(same[1]).imag != 0)


BAD_K = st.one_of(
    st.integers(-5, 0),
    st.sampled_from([0.5, 2.5, -1.0, float("nan"), float("inf")]),
    st.sampled_from([np.asarray([2, 2]), np.ones((1,))]),
)


@settings(max_examples=25, deadline=None)
@given(k=BAD_K)
def test_every_k_schedule_value_refused_at_construction(k):
    with pytest.raises(ValueError, match=r"Invalid every_k_schedule.*gradient_step 0"):
        gradtx.MultiSteps(gradtx.identity(), lambda step, k=k: k)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_every_k_schedule_value_refused_in_an_eager_step(bad):
    """Good at step 0, bad after the first real step: refused in the eager step that
    reads it. Inside jit the value is traced and not read (no host sync)."""
    tx = gradtx.MultiSteps(
        gradtx.identity(), lambda step: jnp.where(step == 0, 1, jnp.asarray(bad))
    )
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    _, state = tx.update(params, state, params)  # k = 1: a real step
    with pytest.raises(ValueError, match=r"Invalid every_k_schedule.*gradient_step 1"):
        tx.update(params, state, params)
    jax.jit(tx.update)(params, state, params)  # traced: not read, no sync


def test_every_k_schedule_integral_floats_are_fine():
    """optax's schedules return floats: an integral float k works (k = 2.0)."""
    tx = gradtx.MultiSteps(gradtx.identity(), lambda step: jnp.asarray(2.0))
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    for g in (1.0, 3.0):
        u, state = tx.update({"w": jnp.full(2, g)}, state, params)
    np.testing.assert_array_equal(u["w"], np.full(2, 2.0, np.float32))
