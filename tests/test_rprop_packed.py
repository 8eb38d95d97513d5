"""Rprop's packed state: step size and previous sign in one integer per weight.

The packed and the unpacked layout (the one ``inject_hyperparams`` gets when it passes
``max_step_size`` as an array) must give the same updates and the same step sizes and
signs, bit for bit, for every variant; the accessors read both. The encoding itself is a
private helper (``gradtx._packing``), tested directly here on its boundaries.
"""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import _packing  # private: the encoding's boundaries are tested directly

VARIANTS = gradtx.RPROP_VARIANTS
STEP_DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]


@pytest.mark.parametrize("dtype", STEP_DTYPES)
def test_encoding_round_trips_up_to_the_limit(dtype):
    limit = _packing.packed_limit(dtype)
    steps = jnp.asarray([0.0, 1e-30, 1e-6, 0.01, 1.0, 50.0, limit], jnp.float32).astype(dtype)
    for s in (-1, 0, 1):
        signs = jnp.full(steps.shape, s, jnp.int8)
        code = _packing.encode_int8(steps, signs)
        step, sign = _packing.decode(code)
        assert step.dtype == jnp.dtype(dtype) and sign.dtype == jnp.int8
        np.testing.assert_array_equal(np.asarray(step, np.float32), np.asarray(steps, np.float32))
        np.testing.assert_array_equal(np.asarray(sign), s)
        # the move sign(g')·Δ read straight from the code: the same bits as the product
        moved = np.asarray(_packing.signed_step(code), np.float32)
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
def test_both_encodings_read_a_gradients_sign_as_numpy_with_nan_as_zero(g_dtype, step_dtype):
    """sign(g) from g's bits, where XLA's flush-to-zero would read a subnormal as 0: the
    thirds' offsets and the quarters' top bits against NumPy's sign (NaN: 0, as torch's
    ``sign`` product with a NaN never counts as agreement or flip)."""
    g = jnp.asarray(np.asarray(SPECIAL, np.float64)).astype(g_dtype)
    expected = np.nan_to_num(np.sign(np.asarray(g, np.float64)), nan=0.0).astype(np.int8)
    steps = jnp.full(g.shape, 0.01, step_dtype)
    k = _packing.Offsets.like(steps)
    thirds = _packing.ThirdsSigns(k.zero, k).of(g)
    np.testing.assert_array_equal(np.asarray(thirds.as_int8()), expected)
    if step_dtype != jnp.float16:  # 1e-6 is subnormal in float16: k = 0, steps below 2
        q = _packing.Quarters.of(1e-6, step_dtype)
        top = q.signs(q.encode(steps, k.zero)).of(g).top
        read = np.where(top == q._q(1), 1, np.where(top == q._q(3), -1, 0))
        np.testing.assert_array_equal(read, expected)


def test_the_next_float_above_the_limit_does_not_pack():
    """The limit is exact: bits(limit) = K - 1, so the next float would decode wrongly."""
    limit = np.float32(_packing.packed_limit(jnp.float32))
    assert limit.view(np.uint32) == 0x55555554
    assert not _packing.fits(float(np.nextafter(limit, np.float32(np.inf))), jnp.float32)


def _run(tx, params, grads):
    state = tx.init(params)
    step = jax.jit(lambda g, s, p, e: tx.update(g, s, p, value=e))
    out = []
    for t, g in enumerate(grads):
        u, state = step(g, state, params, jnp.float32(10.0 - t % 3))
        params = gradtx.apply_updates(params, u)
        out.append((u, gradtx.rprop_step_sizes(state), gradtx.rprop_prev_signs(state)))
    return out, state


def _problem(dtype=jnp.float32, steps=12):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((5, 4)), dtype), "b": jnp.zeros(3, dtype)}
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
        for _ in range(steps)
    ]
    for g in grads[::4]:  # zero gradients too: sign 0
        g["b"] = jnp.zeros_like(g["b"])
    return params, grads


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
    assert sum(x.nbytes for x in jax.tree.leaves(ours.init(params)) if x.ndim) == 4 * 23
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


# --------------------------------------------------------------------------------------
# The "+" variants' quarters: a step-size decrease deferred to the next step
# --------------------------------------------------------------------------------------

PLUS = ("rprop+", "irprop+")


@pytest.mark.parametrize(
    "dtype,low,high",
    [
        (jnp.bfloat16, 1e-6, 50.0),
        (jnp.float32, 1e-6, 50.0),
        (jnp.float64, 1e-6, 50.0),
        (jnp.float16, 1e-3, 1.0),
        (jnp.float32, 0.0, 1.5),  # k = 0: the step sizes stored as they are
    ],
)
def test_quarters_round_trip_every_state_between_the_bounds(dtype, low, high):
    assert _packing.Quarters.fits(low, high, dtype)
    q = _packing.Quarters.of(low, dtype)
    steps = jnp.asarray([low, 2 * low, 0.01, 1.0, 0.75 * high, high], dtype)
    for c in range(4):  # sign 0, +, -, pending
        masks = [jnp.full(steps.shape, c == i) for i in (1, 2, 3)]
        code = q.encode_masks(steps, *masks)
        step, pos, neg, pending = q.unpack(code)
        np.testing.assert_array_equal(np.asarray(step), np.asarray(steps))
        for mask, i in zip((pos, neg, pending), (1, 2, 3)):
            np.testing.assert_array_equal(np.asarray(mask), c == i)
        # the move: sign(g)·Δ (the product's bits) where g' != 0, or pending and worse
        for g, worse in itertools.product((1.0, -1.0), (True, False)):
            moved = np.asarray(q.move(code, jnp.full(steps.shape, g, dtype), worse))
            factor = g if c in (1, 2) or (c == 3 and worse) else 0.0
            expected = np.asarray(steps) * np.asarray(factor, np.asarray(steps).dtype)
            np.testing.assert_array_equal(moved.view(np.uint8), expected.view(np.uint8))


def test_quarters_hold_step_sizes_that_scale_below_two_and_no_further():
    """Δmin = m·2^e (1 <= m < 2) is scaled by 2^-k into float32's lowest normal binade,
    [2^-126, 2^-125), so k = e + 126; a scaled step size must stay below 2, whose bits
    are a quarter of the range: the largest Δmax that packs is the float below 2^(e+127)."""
    low = np.float32(1e-6)
    e = -20
    assert 2.0**e <= low < 2.0 ** (e + 1)
    assert _packing.Quarters.of(low, jnp.float32).k == e + 126
    limit = np.float32(2.0 ** (e + 127))
    assert np.asarray(2.0**-126, np.float32).view(np.uint32) == 2**23  # the lowest normal
    assert np.asarray(2.0, np.float32).view(np.uint32) == 2**30  # Q: bits(2.0)
    assert _packing.Quarters.fits(float(low), float(np.nextafter(limit, 0)), jnp.float32)
    assert not _packing.Quarters.fits(float(low), float(limit), jnp.float32)
    # Δmin = 0 (or subnormal): k = 0, the step sizes stored as they are, below 2
    assert _packing.Quarters.of(0.0, jnp.float32).k == 0
    assert _packing.Quarters.fits(0.0, 1.5, jnp.float32)
    assert not _packing.Quarters.fits(0.0, 50.0, jnp.float32)
    assert not _packing.Quarters.fits(1e-6, 50.0, jnp.float16)  # 1e-6 is subnormal in float16
    assert not _packing.Quarters.fits(1e-3, 50.0, jnp.float16)  # 2^-10 to 2^5: float16 holds 16
    assert _packing.Quarters.fits(1e-3, 1.0, jnp.float16)


@pytest.mark.parametrize("variant", PLUS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_plus_variants_keep_the_floor_exact_where_scaled_products_underflow(variant, dtype):
    """Δmin a power of two is scaled to the lowest normal float exactly: there Δ·2^-k·η-
    falls below it, into the subnormals that XLA on CPU flushes to zero, and the clip
    must still give Δmin·2^-k, as the unpacked layout's clip gives Δmin. Alternating
    signs drive every step size down to the floor and keep it there."""
    low = 2.0**-100 if dtype != jnp.float16 else 2.0**-10
    hyper = dict(learning_rate=0.5, eta_minus=0.01, eta_plus=1.7, min_step_size=low)
    packed = gradtx.scale_by_rprop(**hyper, max_step_size=1.0, variant=variant)
    unpacked = gradtx.scale_by_rprop(**hyper, max_step_size=jnp.float32(1.0), variant=variant)
    assert isinstance(
        packed.init({"w": jnp.ones(1, dtype)}),
        gradtx.ScaleByRpropPlusPackedState | gradtx.ScaleByIRpropPlusPackedState,
    )
    params = {"w": jnp.zeros(4, dtype)}
    signs = np.asarray([1.0, -1.0, 1.0, 0.0])
    grads = [{"w": jnp.asarray(signs * (-1) ** t, dtype)} for t in range(60)]
    (ours, s_p), (theirs, _) = _run(packed, params, grads), _run(unpacked, params, grads)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.min(gradtx.rprop_step_sizes(s_p)["w"])) == low  # the floor was reached


@pytest.mark.parametrize("variant", PLUS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64])
def test_the_accessors_read_a_plus_state_alike_under_jit(variant, dtype):
    """Under ``jit`` the state's Δmin is traced, and so is the scale it gives."""
    params, grads = _problem(dtype)
    bounds = dict(min_step_size=1e-3, max_step_size=1.0) if dtype == jnp.float16 else {}
    tx = gradtx.scale_by_rprop(0.02, variant=variant, **bounds)
    _, state = _run(tx, params, grads)
    assert jax.tree.leaves(state.packed)[0].dtype.itemsize == jnp.dtype(dtype).itemsize
    for read in (gradtx.rprop_step_sizes, gradtx.rprop_prev_signs):
        chex.assert_trees_all_equal(jax.jit(read)(state), read(state))


@pytest.mark.parametrize("variant", PLUS)
def test_plus_variants_pack_with_torch_bounds_and_fall_back_where_they_cannot(variant):
    params = {"w": jnp.ones(3, jnp.float32)}
    packed = gradtx.scale_by_rprop(0.01, variant=variant).init(params)  # bounds 1e-6, 50
    assert isinstance(
        packed, gradtx.ScaleByRpropPlusPackedState | gradtx.ScaleByIRpropPlusPackedState
    )
    unpacked = gradtx.ScaleByRpropState | gradtx.ScaleByIRpropPlusState
    for kw in (
        dict(min_step_size=0.0),  # k = 0: the step sizes must stay below 2
        dict(eta_minus=jnp.float32(0.5)),  # an array: the state could not hold it exactly
        dict(min_step_size=jnp.float32(1e-6)),
    ):
        assert isinstance(gradtx.scale_by_rprop(0.01, variant=variant, **kw).init(params), unpacked)


@pytest.mark.parametrize("variant", PLUS)
def test_a_sign_flip_defers_the_decrease_and_the_accessors_show_it(variant):
    params = {"w": jnp.zeros(2, jnp.float32)}
    hyper = dict(learning_rate=0.1, eta_minus=0.5, eta_plus=1.2, variant=variant)
    packed = gradtx.scale_by_rprop(**hyper)
    unpacked = gradtx.scale_by_rprop(**hyper, max_step_size=jnp.float32(50.0))
    s_p, s_u = packed.init(params), unpacked.init(params)
    for t, g in enumerate(([1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0])):
        g, e = {"w": jnp.asarray(g, jnp.float32)}, jnp.float32(t)  # the loss rises: undo
        u_p, s_p = packed.update(g, s_p, params, value=e)
        u_u, s_u = unpacked.update(g, s_u, params, value=e)
        np.testing.assert_array_equal(np.asarray(u_p["w"]), np.asarray(u_u["w"]))
        for read in (gradtx.rprop_step_sizes, gradtx.rprop_prev_signs):
            np.testing.assert_array_equal(np.asarray(read(s_p)["w"]), np.asarray(read(s_u)["w"]))
        if t == 1:  # weight 1 flipped: its code holds Δ_0 = 0.1, marked, and reads 0.05
            q = _packing.Quarters.of(1e-6, jnp.float32)
            held, _, _, pending = q.unpack(s_p.packed["w"])
            np.testing.assert_array_equal(np.asarray(pending), [False, True])
            assert float(held[1]) == np.float32(0.1)
            np.testing.assert_array_equal(
                np.asarray(gradtx.rprop_step_sizes(s_p)["w"]),
                [np.float32(0.1) * np.float32(1.2), np.float32(0.1) * np.float32(0.5)],
            )
            assert float(u_p["w"][1]) == -float(held[1])  # undo: the step back, by Δ_1


@pytest.mark.parametrize("variant", PLUS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_plus_variants_pack_without_x64_and_agree_with_the_unpacked_layout(variant, dtype):
    """Without x64 the state's scalars are float32: η- and Δmin must read back exactly."""
    with jax.enable_x64(False):
        params, grads = _problem(dtype)
        hyper = dict(learning_rate=0.02, eta_minus=0.4, eta_plus=1.3, min_step_size=1e-3)
        packed = gradtx.scale_by_rprop(**hyper, max_step_size=0.1, variant=variant)
        high = jnp.asarray(0.1, dtype)  # an array in the step sizes' dtype: unpacked
        unpacked = gradtx.scale_by_rprop(**hyper, max_step_size=high, variant=variant)
        (ours, s_p), (theirs, _) = _run(packed, params, grads), _run(unpacked, params, grads)
        assert s_p.eta_minus.dtype == jnp.float32
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_eta_minus_that_rounds_twice_differently_is_refused_for_float16_without_x64():
    """0.5 + 2^-12 + 2^-41 rounds up to float16 directly, but to 0.5 + 2^-12 in float32
    and then (a tie, to even) down: without x64 the state's float32 scalar could not give
    the accessors the float16 value the rule uses, and ``init`` says so."""
    eta = 0.5 + 2**-12 + 2**-41
    assert np.asarray(eta, np.float16) != np.asarray(np.float32(eta), np.float16)
    params = {"w": jnp.ones(2, jnp.float16)}
    tx = gradtx.scale_by_rprop(
        0.01, eta_minus=eta, min_step_size=1e-3, max_step_size=1.0, variant="rprop+"
    )
    with jax.enable_x64(False), pytest.raises(ValueError, match="exact in float32"):
        tx.init(params)
    assert isinstance(tx.init(params), gradtx.ScaleByRpropPlusPackedState)  # x64: float64


@pytest.mark.parametrize("variant", PLUS)
def test_float16_plus_variants_name_the_fix_when_the_bounds_do_not_fit(variant):
    params = {"w": jnp.ones(2, jnp.float16)}
    with pytest.raises(ValueError, match=r"min_step_size, max_step_size.*accumulator_dtype"):
        gradtx.scale_by_rprop(0.01, variant=variant).init(params)
    wide = gradtx.scale_by_rprop(0.01, variant=variant, accumulator_dtype=jnp.float32)
    assert gradtx.rprop_step_sizes(wide.init(params))["w"].dtype == jnp.float32
    narrow = gradtx.scale_by_rprop(0.01, min_step_size=1e-3, max_step_size=1.0, variant=variant)
    assert narrow.init(params).packed["w"].dtype == jnp.uint16


def test_writing_step_sizes_into_a_plus_state_round_trips_and_checks_the_range():
    from gradtx._rprop_state import with_values  # the torch bridge's way in

    params = {"w": jnp.ones(3, jnp.float32)}
    block = gradtx.scale_by_rprop(0.01, variant="rprop+").init(params)
    steps = {"w": jnp.asarray([1e-6, 0.3, 50.0], jnp.float32)}
    signs = {"w": jnp.asarray([-1, 0, 1], jnp.int8)}
    new = with_values(block, steps, signs)
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_step_sizes(new)["w"]), steps["w"])
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_prev_signs(new)["w"]), signs["w"])
    with pytest.raises(ValueError, match="Invalid step sizes"):
        with_values(block, {"w": jnp.asarray([1e-7, 0.3, 50.0], jnp.float32)}, signs)


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
