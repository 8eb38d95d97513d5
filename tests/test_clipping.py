"""Clipping blocks against optax (same names and numbers) and, for the per-leaf norm clip,
against a NumPy reference written from Dragon's ``UpdateOpBase::TransformGrad``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx


def _array(x, dtype):
    """``jnp.asarray(x, dtype)``: the same array (NumPy rounds ``x`` to ``dtype`` on the
    host, as ``jnp.asarray`` does), put on the device without compiling a conversion
    program per dtype and shape (``jnp.asarray`` compiles one to stage it)."""
    return jax.device_put(np.asarray(x, np.dtype(dtype)))


def _host64(x):
    """``x`` (a jax array of float32 or a narrower float dtype) in float64 on the host:
    exact, as the round trip through float32 it stands for was (without that round
    trip's compiled conversion per dtype and shape)."""
    return np.asarray(x).astype(np.float64)


def _tree(dtype, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": _array(scale * rng.standard_normal((4, 3)), dtype),
        "b": _array(scale * rng.standard_normal(3), dtype),
        "s": _array(scale * 0.01, dtype),  # a small leaf, under any bound below
    }


def _dragon_clip_norm(g, clip_norm, scale=1.0):
    """Dragon's TransformGrad for one tensor (seetaresearch/dragon,
    dragon/operators/training/update_op_base.cc): g *= scale; norm = sqrt(dot(g, g));
    if norm > clip_norm: g *= clip_norm / norm."""
    g = np.asarray(g, np.float64) * scale
    norm = np.sqrt(np.dot(g.ravel(), g.ravel()))
    return g * (clip_norm / norm) if norm > clip_norm else g


# Each pair made once, its updates jitted once: the four (dtype, scale) cases share the
# programs (a scale is data, not a new program; each dtype compiles its own), where
# fresh transforms per case retraced them all. gradtx's and optax's stay two programs.
OPTAX_PAIRS = [
    (gradtx.clip(0.5), optax.clip(0.5)),
    (gradtx.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
    (gradtx.clip_by_block_rms(0.7), optax.clip_by_block_rms(0.7)),
]
OPTAX_PAIRS_JITTED = [
    (jax.jit(ours.update), jax.jit(theirs.update)) for ours, theirs in OPTAX_PAIRS
]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_same_numbers_as_optax(dtype, scale):
    g = _tree(dtype, scale)
    for (ours, theirs), (ours_jitted, theirs_jitted) in zip(OPTAX_PAIRS, OPTAX_PAIRS_JITTED):
        # gradtx runs its per-leaf rule compiled eagerly too: one number in both modes,
        # optax's compiled one (same program, same compiler: same bits); optax's eager
        # op-by-op numbers differ from its own compiled ones by a rounding
        v, _ = theirs_jitted(g, theirs.init(g))
        for update in (ours.update, ours_jitted):
            u, _ = update(g, ours.init(g))
            for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v)):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_block_norm_matches_dragon(dtype):
    g = _tree(dtype, 2.0)
    tx = gradtx.chain(gradtx.scale(0.5), gradtx.clip_by_block_norm(1.0))
    u, _ = jax.jit(tx.update)(g, tx.init(g))
    rtol = 1e-6 if dtype == jnp.float32 else 1e-14
    for k in g:
        ref = _dragon_clip_norm(g[k], 1.0, scale=0.5)
        np.testing.assert_allclose(u[k], ref, rtol=rtol, atol=0)
        assert u[k].dtype == dtype
    # leaves under the bound pass bit for bit; leaves over it end on the bound
    np.testing.assert_array_equal(u["s"], g["s"] * 0.5)
    assert abs(float(jnp.linalg.norm(u["w"])) - 1.0) < 10 * jnp.finfo(dtype).eps


def test_complex_leaves_use_the_modulus():
    z = {"z": _array([3 + 4j, 0 + 0j], jnp.complex64)}  # |z| = 5
    u, _ = gradtx.clip_by_block_norm(1.0).update(z, gradtx.clip_by_block_norm(1.0).init(z))
    np.testing.assert_allclose(u["z"], [0.6 + 0.8j, 0], rtol=1e-6)
    ours = gradtx.clip_by_global_norm(1.0)
    u, _ = ours.update(z, ours.init(z))
    v, _ = optax.clip_by_global_norm(1.0).update(z, ())
    np.testing.assert_array_equal(u["z"], v["z"])


def test_grad_through_block_norm_of_zero_is_finite():
    def f(x):
        return jnp.sum(gradtx.clip_by_block_norm(1.0).update({"x": x}, ())[0]["x"])

    assert np.all(np.isfinite(jax.grad(f)(jnp.zeros(3))))


def test_none_leaves_and_vmap():
    tree = {"a": _array(np.full(3, 5.0), jnp.float64), "frozen": None}
    for tx in [
        gradtx.clip(1.0),
        gradtx.clip_by_block_norm(1.0),
        gradtx.clip_by_block_rms(1.0),
        gradtx.clip_by_global_norm(1.0),
    ]:
        u, _ = tx.update(tree, tx.init(tree))
        assert u["frozen"] is None
        batched = jax.vmap(lambda g, tx=tx: tx.update({"a": g}, tx.init({"a": g}))[0])(
            _array(np.full((2, 3), 5.0), jnp.float64)
        )
        assert batched["a"].shape == (2, 3)


@pytest.mark.parametrize(
    "make, name, bad",
    [
        (gradtx.clip, "max_delta", -1.0),
        (gradtx.clip_by_block_norm, "max_norm", 0.0),
        (gradtx.clip_by_global_norm, "max_norm", float("nan")),
        (gradtx.clip_by_block_rms, "threshold", -2.0),
    ],
)
def test_bad_arguments_are_named(make, name, bad):
    with pytest.raises(ValueError, match=name):
        make(bad)


# ---------------------------------------------------------------------------------------
# Norms and RMS in half precision and at extreme magnitudes: no overflow, no underflow.
#
# Every reduction in ``gradtx/_clipping.py`` (``global_norm``, ``clip_by_global_norm``,
# ``clip_by_block_norm``, ``clip_by_block_rms``) must give the true value wherever it is
# representable: checked against float64 NumPy over dtypes (float16, bfloat16, float32)
# and magnitudes (hypothesis), and against torch's ``clip_grad_norm_``. optax 0.2.8 squares
# in the leaf's dtype: float16 ``[300, 400]`` overflows and clips to ``[0, 0]``.
# ---------------------------------------------------------------------------------------


DTYPES = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32}
# decimal exponents whose values (and sums of a few dozen squares' roots) stay normal:
# float16's normal range is 6e-5..65504; bfloat16's and float32's 1.2e-38..3.4e38
EXPONENTS = {"float16": (-3, 3), "bfloat16": (-35, 35), "float32": (-35, 35)}
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23}
# results below the normal range lose precision (not representable): float16's
# subnormals are kept (its arithmetic runs in float32), XLA:CPU flushes float32's and
# bfloat16's to zero
FLOOR = {"float16": 2.0**-24, "bfloat16": 2.0**-126, "float32": 2.0**-126}


@st.composite
def trees(draw):
    name = draw(st.sampled_from(sorted(DTYPES)))
    lo, hi = EXPONENTS[name]
    scale = 10.0 ** draw(st.integers(lo, hi))
    leaves = {}
    for i in range(draw(st.integers(1, 3))):
        size = draw(st.sampled_from([1, 3, 8]))
        mant = draw(st.lists(st.floats(-1, 1, width=32), min_size=size, max_size=size))
        leaves[f"l{i}"] = _array(np.array(mant) * scale, DTYPES[name])
    return name, leaves


def _f64(tree):
    return {k: _host64(v) for k, v in tree.items()}


def _close(got, want, name, scale, ulps=4):
    got = _host64(got)
    eps = EPS[name]
    np.testing.assert_allclose(got, want, rtol=ulps * eps, atol=ulps * eps * scale + FLOOR[name])


# a compile per dtype and shape met: a few dozen examples, spread by the strategy
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(trees())
def test_global_norm_against_float64(case):
    _, tree = case
    want = np.sqrt(sum(np.sum(v**2) for v in _f64(tree).values()))
    got = gradtx.global_norm(tree)
    assert jnp.isfinite(got)
    _close(got, want, "float32", 0.0)  # summed in float32 at least


# one transform each, made once: its compiled rule is reused for every example of a
# dtype and shape; the magnitudes (1e-35..1e35 against a threshold of 1) clip or not
GLOBAL, BLOCK_NORM, BLOCK_RMS = (
    gradtx.clip_by_global_norm(1.0),
    gradtx.clip_by_block_norm(1.0),
    gradtx.clip_by_block_rms(1.0),
)


@SETTINGS
@given(trees())
def test_clip_by_global_norm_against_float64(case):
    name, tree = case
    ref = _f64(tree)
    norm = np.sqrt(sum(np.sum(v**2) for v in ref.values()))
    out, _ = GLOBAL.update(tree, gradtx.EmptyState())
    for k, v in ref.items():
        want = v if norm < 1.0 else v / norm
        assert out[k].dtype == tree[k].dtype
        _close(out[k], want, name, np.max(np.abs(want)))


@SETTINGS
@given(trees())
def test_block_norm_and_block_rms_against_float64(case):
    name, tree = case
    ref = _f64(tree)
    by_norm, _ = BLOCK_NORM.update(tree, gradtx.EmptyState())
    by_rms, _ = BLOCK_RMS.update(tree, gradtx.EmptyState())
    for k, v in ref.items():
        norm, rms = np.sqrt(np.sum(v**2)), np.sqrt(np.mean(v**2))
        want = v / norm if norm > 1.0 else v
        _close(by_norm[k], want, name, np.max(np.abs(want)))
        want = v / max(1.0, rms)
        _close(by_rms[k], want, name, np.max(np.abs(want)))


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_the_issue_example_against_torch(name):
    """float16 [300, 400] clipped to norm 1: torch's [0.6, 0.8] (optax: [0, 0])."""
    g = torch.tensor([300.0, 400.0], dtype=getattr(torch, name))
    p = torch.nn.Parameter(torch.zeros(2, dtype=g.dtype))
    p.grad = g.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_([p], 1.0)
    out, _ = gradtx.clip_by_global_norm(1.0).update(
        {"w": _array([300.0, 400.0], DTYPES[name])}, gradtx.EmptyState()
    )
    theirs = p.grad.to(torch.float64).numpy()
    # torch multiplies by 1 / (n + 1e-6) and rounds that factor to the dtype: one ulp apart
    _close(out["w"], theirs, name, 1.0, ulps=2)
    np.testing.assert_allclose(float(torch_norm), 500.0)
    assert float(gradtx.global_norm({"w": _array([300.0, 400.0], DTYPES[name])})) == 500.0


@pytest.mark.parametrize("name", ["bfloat16", "float32"])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_float32_range_ends_where_torch_over_or_underflows(name, scale):
    """[3, 4] * 1e30 (squares overflow float32) and * 1e-30 (squares underflow): the norm
    is 5e30 / 5e-30, representable; torch's clip_grad_norm_ gives inf (and zeros)."""
    g = _array(np.array([3.0, 4.0]) * scale, DTYPES[name])
    want = np.sqrt(np.sum(_host64(g) ** 2))
    _close(gradtx.global_norm({"w": g}), want, "float32", 0.0)
    out, _ = gradtx.clip_by_global_norm(1.0).update({"w": g}, gradtx.EmptyState())
    if scale > 1:
        _close(out["w"], np.array([0.6, 0.8]), name, 1.0)
    else:
        np.testing.assert_array_equal(out["w"], g)


def test_float32_bits_are_optaxs_where_nothing_overflows():
    """The scaling is by a power of two: in range, the numbers are optax's, bit for bit."""
    import optax

    rng = np.random.default_rng(0)
    tree = {"a": _array(rng.normal(size=37), jnp.float32), "b": _array(np.ones(5), jnp.float32)}
    assert gradtx.global_norm(tree) == optax.tree.norm(tree)
    ours, _ = gradtx.clip_by_global_norm(0.5).update(tree, gradtx.EmptyState())
    # both compiled: XLA rounds the same program the same way (eagerly op by op, optax
    # rounds g / n before the product; gradtx's rules always run compiled)
    theirs, _ = jax.jit(optax.clip_by_global_norm(0.5).update)(tree, optax.EmptyState())
    for k in tree:
        np.testing.assert_array_equal(ours[k], theirs[k])


def test_nan_and_inf_propagate():
    assert jnp.isnan(gradtx.global_norm({"w": _array([np.nan, 1.0], jnp.float64)}))
    assert gradtx.global_norm({"w": _array([np.inf, 1.0], jnp.float64)}) == jnp.inf
    assert gradtx.global_norm({"w": _array(np.zeros(3), jnp.bfloat16)}) == 0.0
    assert gradtx.global_norm({}) == 0.0


def test_ml_dtypes_bfloat16_is_jax_bfloat16():
    assert jnp.dtype(jnp.bfloat16) == np.dtype(ml_dtypes.bfloat16)
