"""Rprop's packed state: step size and previous sign in one integer per weight.

The packed and the unpacked layout (the one ``inject_hyperparams`` gets when it passes
``max_step_size`` as an array) must give the same updates and the same step sizes and
signs, bit for bit, for every variant; the accessors read both. The encoding itself is a
private helper (``gradtx._rprop._storage``), tested directly here on its boundaries.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx._rprop import _storage  # private: the encoding's boundaries are tested directly
from gradtx._rprop._state import with_values  # the torch bridge's way in

VARIANTS = gradtx.RPROP_VARIANTS
STEP_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]


@pytest.mark.parametrize("dtype", STEP_DTYPES)
def test_encoding_round_trips_up_to_the_limit(dtype):
    limit = _storage.packed_limit(dtype)
    # the test's arrays made in NumPy and handed over (no conversion program per dtype)
    steps = np.asarray([0.0, 1e-30, 1e-6, 0.01, 1.0, 50.0, limit], np.float32)
    steps = jax.device_put(steps.astype(jnp.dtype(dtype)))
    store = _storage.Packed.like(steps)
    for s in (-1, 0, 1):
        signs = jax.device_put(np.full(steps.shape, s, np.int8))
        (code,) = store.write(steps, store.of_int8(signs))
        step, sign = store.read(code)
        sign = store.as_int8(sign)
        assert step.dtype == jnp.dtype(dtype) and sign.dtype == jnp.int8
        np.testing.assert_array_equal(np.asarray(step, np.float32), np.asarray(steps, np.float32))
        np.testing.assert_array_equal(np.asarray(sign), s)
        # the move sign(g')·Δ read straight from the code: the same bits as the product
        moved = np.asarray(store.move(code), np.float32)
        expected = np.float32(s) * np.asarray(steps, np.float32)
        np.testing.assert_array_equal(moved.view(np.uint32), expected.view(np.uint32))


SPECIAL = [0.0, -0.0, 1e-45, -1e-45, 1e-30, -2.5, 3.0, np.inf, -np.inf, np.nan, -np.nan]


@pytest.mark.parametrize(
    "g_dtype,step_dtype",
    [
        (jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.float32),  # bfloat16 params, float32 step sizes
        (jnp.float16, jnp.float16),
        (jnp.bfloat16, jnp.bfloat16),
        (jnp.float64, jnp.float64),
    ],
)
def test_both_stores_read_a_gradients_sign_as_numpy_with_nan_as_zero(g_dtype, step_dtype):
    """sign(g) from g's bits, where XLA's flush-to-zero would read a subnormal as 0: the
    packed offsets and the plain int8 against NumPy's sign (NaN: 0, as torch's ``sign``
    product with a NaN never counts as agreement or flip)."""
    g = jax.device_put(np.asarray(SPECIAL, np.float64).astype(jnp.dtype(g_dtype)))
    expected = np.nan_to_num(np.sign(np.asarray(g, np.float64)), nan=0.0).astype(np.int8)
    steps = jax.device_put(np.full(g.shape, 0.01, jnp.dtype(step_dtype)))
    for store in (_storage.Packed.like(steps), _storage.Plain.like(steps)):
        np.testing.assert_array_equal(np.asarray(store.as_int8(store.sign(g))), expected)


def test_the_next_float_above_the_limit_does_not_pack():
    """The limit is exact: bits(limit) = K - 1, so the next float would decode wrongly."""
    limit = np.float32(_storage.packed_limit(jnp.float32))
    assert limit.view(np.uint32) == 0x55555554
    assert not _storage.fits(float(np.nextafter(limit, np.float32(np.inf))), jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def _step(tx, g, state, params, e):
    """One update with what the tests read of it (the updates, step sizes and signs) and
    the moved params: one compiled program (eagerly, apply_updates and the accessors
    compile a program per operation)."""
    u, state = tx.update(g, state, params, value=e)
    reads = (u, gradtx.rprop_step_sizes(state), gradtx.rprop_prev_signs(state))
    return reads, state, gradtx.apply_updates(params, u)


def _run(tx, params, grads):
    state = tx.init(params)
    out = []
    for t, g in enumerate(grads):
        reads, state, params = _step(tx, g, state, params, np.float32(10.0 - t % 3))
        out.append(reads)
    return out, state


def _problem(dtype=jnp.float32, steps=12):
    """Made in NumPy and handed over: no conversion program per dtype and shape."""
    rng = np.random.default_rng(0)
    dtype = jnp.dtype(dtype)
    params = {"w": rng.standard_normal((5, 4)).astype(dtype), "b": np.zeros(3, dtype)}
    grads = [
        jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(p.dtype), params)
        for _ in range(steps)
    ]
    for g in grads[::4]:  # zero gradients too: sign 0
        g["b"] = np.zeros_like(g["b"])
    return jax.device_put((params, grads))


@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_and_unpacked_layouts_agree_bit_for_bit(variant):
    params, grads = _problem()
    hyper = dict(learning_rate=0.02, eta_minus=0.4, eta_plus=1.3, min_step_size=1e-3)
    packed = gradtx.scale_by_rprop(**hyper, max_step_size=0.1, variant=variant)
    # max_step_size as an array: the range cannot be checked, the layout is unpacked
    unpacked = gradtx.scale_by_rprop(**hyper, max_step_size=jnp.float32(0.1), variant=variant)
    (ours, s_p), (theirs, s_u) = _run(packed, params, grads), _run(unpacked, params, grads)
    assert isinstance(
        s_p,
        gradtx.ScaleByRpropPackedState
        | gradtx.ScaleByRpropPlusPackedState
        | gradtx.ScaleByIRpropPlusPackedState,
    )
    assert isinstance(s_u, gradtx.ScaleByRpropState | gradtx.ScaleByIRpropPlusState)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_inject_hyperparams_keeps_the_packed_layout_when_the_bounds_are_static():
    """``rprop``'s ``step_sizes`` is a pair, hence static: injecting ``learning_rate``
    keeps the packed state; injecting ``scale_by_rprop``'s ``max_step_size`` does not."""
    params = {"w": jnp.ones(3, jnp.float32)}
    state = gradtx.inject_hyperparams(gradtx.rprop)(learning_rate=0.1).init(params)
    assert gradtx.rprop_step_sizes(state)["w"].dtype == jnp.float32
    assert "ScaleByRpropPackedState" in repr(state)
    inner = gradtx.inject_hyperparams(gradtx.scale_by_rprop)(0.1, max_step_size=1.0)
    assert isinstance(inner.init(params).inner_state, gradtx.ScaleByRpropState)


def test_a_max_step_size_beyond_the_packed_range_falls_back_to_the_unpacked_layout():
    state = gradtx.scale_by_rprop(0.1, max_step_size=1e20).init({"w": jnp.ones(2)})
    assert isinstance(state, gradtx.ScaleByRpropState)


def test_float16_step_sizes_above_the_packed_range_raise_at_init():
    tx = gradtx.scale_by_rprop(0.1, max_step_size=100.0)
    with pytest.raises(ValueError, match=r"max_step_size.*85.25.*accumulator_dtype"):
        tx.init({"w": jnp.ones(2, jnp.float16)})
    tx = gradtx.scale_by_rprop(0.1, max_step_size=100.0, accumulator_dtype=jnp.float32)
    assert gradtx.rprop_step_sizes(tx.init({"w": jnp.ones(2, jnp.float16)}))["w"].dtype == (
        jnp.float32
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_accumulator_dtype_float32_for_bfloat16_params(variant):
    """float32 step sizes for bfloat16 params: each update is the float32 transform's
    update on the same gradients (read exactly in float32), rounded to bfloat16."""
    params, grads = _problem(jnp.bfloat16, steps=8)
    wide = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    ours = gradtx.rprop(0.02, variant=variant, accumulator_dtype=jnp.float32)
    ref = gradtx.rprop(0.02, variant=variant)
    per_weight = 5 if variant in ("rprop+", "irprop+") else 4  # the "+": a pending byte
    assert sum(x.nbytes for x in jax.tree.leaves(ours.init(params)) if x.ndim) == per_weight * 23
    s_o, s_r = ours.init(params), ref.init(wide)
    for t, g in enumerate(grads):
        e = jnp.float32(5.0 - t % 2)
        u_o, s_o = ours.update(g, s_o, params, value=e)
        u_r, s_r = ref.update(jax.tree.map(lambda x: x.astype(jnp.float32), g), s_r, wide, value=e)
        for a, b in zip(jax.tree.leaves(u_o), jax.tree.leaves(u_r)):
            assert a.dtype == jnp.bfloat16
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b.astype(jnp.bfloat16)))
    for a, b in zip(
        jax.tree.leaves(gradtx.rprop_step_sizes(s_o)), jax.tree.leaves(gradtx.rprop_step_sizes(s_r))
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("bad", [jnp.int32, "complex64", "not a dtype"])
def test_accumulator_dtype_is_validated(bad):
    with pytest.raises(ValueError, match="Invalid accumulator_dtype"):
        gradtx.scale_by_rprop(0.1, accumulator_dtype=bad)
    with pytest.raises(ValueError, match="Invalid accumulator_dtype"):
        gradtx.rprop(0.1, accumulator_dtype=bad)


def test_accessors_read_the_state_through_any_wrapper_and_name_what_they_miss():
    params = {"w": jnp.ones(2, jnp.float32)}
    state = gradtx.chain(gradtx.clip(1.0), gradtx.rprop(0.03)).init(params)
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_step_sizes(state)["w"]), np.float32(0.03))
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_prev_signs(state)["w"]), 0)
    with pytest.raises(ValueError, match="found 0"):
        gradtx.rprop_step_sizes(gradtx.rmsprop().init(params))
    with pytest.raises(ValueError, match="found 2"):
        gradtx.rprop_prev_signs((state, state))


def test_initial_step_sizes_are_clipped_into_the_bounds():
    state = gradtx.scale_by_rprop(100.0, max_step_size=50.0).init({"w": jnp.ones(2)})
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_step_sizes(state)["w"]), 50.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_writing_step_sizes_into_a_state_round_trips_and_checks_the_range(variant):
    params = {"w": jnp.ones(3, jnp.float32)}
    block = gradtx.scale_by_rprop(0.01, variant=variant).init(params)
    steps = {"w": jnp.asarray([1e-6, 0.3, 50.0], jnp.float32)}
    signs = {"w": jnp.asarray([-1, 0, 1], jnp.int8)}
    new = with_values(block, steps, signs)
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_step_sizes(new)["w"]), steps["w"])
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_prev_signs(new)["w"]), signs["w"])
    for bad in (-1e-7, np.nan, 1e14):  # negative, NaN, beyond the packed range
        with pytest.raises(ValueError, match="Invalid step sizes"):
            with_values(block, {"w": jnp.asarray([bad, 0.3, 50.0], jnp.float32)}, signs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bounds_given_as_float32_arrays_keep_bfloat16_step_sizes(variant):
    """The unpacked layout's step sizes stay in the params' dtype (no accumulator_dtype)
    when the bounds arrive as arrays of a wider dtype, as under inject_hyperparams."""
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    tx = gradtx.scale_by_rprop(0.01, max_step_size=jnp.float32(50.0), variant=variant)
    state = tx.init(params)
    assert gradtx.rprop_step_sizes(state)["w"].dtype == jnp.bfloat16
    _, state = tx.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params, value=1.0)
    assert gradtx.rprop_step_sizes(state)["w"].dtype == jnp.bfloat16
