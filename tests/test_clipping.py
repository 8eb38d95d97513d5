"""Clipping blocks against optax (same names and numbers) and, for the per-leaf norm clip,
against a NumPy reference written from Dragon's ``UpdateOpBase::TransformGrad``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _tree(dtype, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(scale * rng.standard_normal((4, 3)), dtype),
        "b": jnp.asarray(scale * rng.standard_normal(3), dtype),
        "s": jnp.asarray(scale * 0.01, dtype),  # a small leaf, under any bound below
    }


def _dragon_clip_norm(g, clip_norm, scale=1.0):
    """Dragon's TransformGrad for one tensor (seetaresearch/dragon,
    dragon/operators/training/update_op_base.cc): g *= scale; norm = sqrt(dot(g, g));
    if norm > clip_norm: g *= clip_norm / norm."""
    g = np.asarray(g, np.float64) * scale
    norm = np.sqrt(np.dot(g.ravel(), g.ravel()))
    return g * (clip_norm / norm) if norm > clip_norm else g


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_same_numbers_as_optax(dtype, scale):
    g = _tree(dtype, scale)
    pairs = [
        (gradtx.clip(0.5), optax.clip(0.5)),
        (gradtx.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
        (gradtx.clip_by_block_rms(0.7), optax.clip_by_block_rms(0.7)),
    ]
    for ours, theirs in pairs:
        # gradtx runs its per-leaf rule compiled eagerly too: one number in both modes,
        # optax's compiled one (same program, same compiler: same bits); optax's eager
        # op-by-op numbers differ from its own compiled ones by a rounding
        v, _ = jax.jit(theirs.update)(g, theirs.init(g))
        for wrap in (lambda f: f, jax.jit):
            u, _ = wrap(ours.update)(g, ours.init(g))
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
    z = {"z": jnp.asarray([3 + 4j, 0 + 0j], jnp.complex64)}  # |z| = 5
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
    tree = {"a": jnp.ones(3) * 5, "frozen": None}
    for tx in [
        gradtx.clip(1.0),
        gradtx.clip_by_block_norm(1.0),
        gradtx.clip_by_block_rms(1.0),
        gradtx.clip_by_global_norm(1.0),
    ]:
        u, _ = tx.update(tree, tx.init(tree))
        assert u["frozen"] is None
        batched = jax.vmap(lambda g, tx=tx: tx.update({"a": g}, tx.init({"a": g}))[0])(
            jnp.ones((2, 3)) * 5
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
