"""optax's aliases against gradtx: optax.rmsprop's variants reproduced by documented
gradtx chains (trajectories), gradtx.rmsprop being torch's rule and not optax's, and the
documented differences: optax's Rprop lags one step (block and alias) and does not clip
its first step; its complex-number convention."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests import _tolerance as h

from .optax_cases import (
    GRADS,
    PARAMS,
    config_id,
    count_schedule,
    grid,
    leaves_of,
    trajectories,
    trajectory,
)
from .recipes import optax_rmsprop as rmsprop_like_optax

# ----------------------------------------------------------------------------------------
# optax.rmsprop's variants as gradtx chains (trajectories)
# ----------------------------------------------------------------------------------------


RMSPROP_VARIANTS = grid(
    momentum=[None, 0.9],
    centered=[False, True],
    initial_scale=[0.0, 1.0],
    eps_in_sqrt=[True, False],
    bias_correction=[False, True],
)
RMSPROP_VARIANTS += [{"momentum": 0.9, "nesterov": True, "centered": c} for c in (False, True)]
RMSPROP_VARIANTS += [{"learning_rate": count_schedule, "decay": 0.5, "eps": 1e-3}]


def _check_trajectories(reference, config, ours, theirs_tx, zero_first=False, steps=30):
    """``ours`` (a trajectory) against ``theirs_tx``'s, within the tolerance that
    ``theirs_tx``'s own conditioning allows."""
    theirs, *nudged = map(leaves_of, trajectories(theirs_tx, steps, zero_first))
    dtypes = [x.dtype for x in jax.tree.leaves(PARAMS)]
    h.check_against(reference, config, dtypes, leaves_of(ours), theirs, nudged, steps)


@pytest.mark.parametrize("kw", RMSPROP_VARIANTS, ids=config_id)
def test_optax_rmsprop_variants(kw):
    """Trajectories. With centered + bias_correction from a zero initial_scale, the first
    step divides by the root of rounding noise (see test_normalisers), which sends each
    library's trajectory its own way (momentum carries it on): those runs start from a
    zero gradient, for which that step is exactly 0 in both. Centered float32 runs get
    looser tolerances than the rest, measured: the centered variance v - mu^2 cancels on
    this problem, and gradtx writes its averages in torch's rounding order, optax in its
    own (one rounding apart per step)."""
    kw = {"learning_rate": 0.01, **kw}
    zero = bool(kw.get("centered") and kw.get("bias_correction") and not kw.get("initial_scale"))
    ours = trajectory(rmsprop_like_optax(**kw), zero_first=zero)
    _check_trajectories("optax.rmsprop", config_id(kw), ours, optax.rmsprop(**kw), zero)


# ----------------------------------------------------------------------------------------
# Documented differences
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_optax_rprop_lags_one_step(lr):
    """optax 0.2.8's scale_by_rprop returns, at step t, the update gradtx (and torch)
    return at step t-1, zeroed where the gradient's sign flips at t; its first update is
    all zeros. Its step sizes are ours, and its state's ``prev_updates`` is our update of
    this step. (Shown, not copied: gradtx returns this step's.) The alias-level lag:
    :func:`test_optax_rprop_alias_lags_one_step`."""
    grads = [_float64(g) for g in GRADS]
    ours, theirs = gradtx.scale_by_rprop(lr), optax.scale_by_rprop(lr)
    p = _float64(PARAMS)
    s_o, s_t = ours.init(p), theirs.init(p)
    prev_ours = jax.tree.map(np.zeros_like, _numpy(p))
    for t, g in enumerate(grads):
        flip = _flips(g, gradtx.rprop_prev_signs(s_o))
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        u_o = _numpy(u_o)
        expected = jax.tree.map(lambda f, u: np.where(f, 0.0, u), flip, prev_ours)
        chex.assert_trees_all_equal(u_t, expected)
        chex.assert_trees_all_equal(s_t.step_sizes, gradtx.rprop_step_sizes(s_o))
        # optax holds this step's update (ours) in its state, to return it next step
        chex.assert_trees_all_equal(s_t.prev_updates, u_o)
        if t == 0:
            assert all(not np.asarray(x).any() for x in jax.tree.leaves(u_t))
            assert any(np.asarray(x).any() for x in jax.tree.leaves(u_o))
        prev_ours = u_o
    h.record("optax.scale_by_rprop (lag shown)", f"lr={lr}", "float64", 0.0)


def _numpy(tree):
    return jax.tree.map(np.asarray, tree)


def _float64(tree):
    """``tree`` cast to float64 in NumPy (the same values as JAX's cast), placed on the
    device: no compiled conversion per leaf's shape."""
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x).astype(np.float64)), tree)


def _flips(g, prev_signs):
    """Where the gradient's sign flips against the previous step's (``sign(g) * s < 0``),
    in NumPy: exact either way."""
    return jax.tree.map(lambda g, s: np.sign(np.asarray(g)) * np.asarray(s) < 0, g, prev_signs)


def test_optax_rprop_does_not_clip_first_step():
    """A learning rate above max_step_size: optax keeps it on the first step (its
    'no sign information' branch does not clip), gradtx clips it (torch does too)."""
    p = jnp.zeros(3)
    g = jnp.array([1.0, -1.0, 2.0])
    s_o = gradtx.scale_by_rprop(100.0, max_step_size=50.0).init(p)
    s_t = optax.scale_by_rprop(100.0, max_step_size=50.0).init(p)
    _, s_o = gradtx.scale_by_rprop(100.0, max_step_size=50.0).update(g, s_o, p)
    _, s_t = optax.scale_by_rprop(100.0, max_step_size=50.0).update(g, s_t, p)
    np.testing.assert_array_equal(np.asarray(gradtx.rprop_step_sizes(s_o)), 50.0)
    np.testing.assert_array_equal(np.asarray(s_t.step_sizes), 100.0)


def test_complex_convention_differs_from_optax():
    """For complex params gradtx (like torch) normalises real and imaginary parts
    separately; optax divides by sqrt(EMA of |g|^2). gradtx on a complex array equals
    optax on its real view, and differs from optax on the complex array."""
    rng = np.random.default_rng(3)
    p = jnp.asarray(rng.standard_normal(6) + 1j * rng.standard_normal(6))
    gs = [jnp.asarray(rng.standard_normal(6) + 1j * rng.standard_normal(6)) for _ in range(5)]
    ours, theirs = gradtx.scale_by_rms(0.9), optax.scale_by_rms(0.9)
    s_o, s_t, s_r = ours.init(p), theirs.init(p), theirs.init(jnp.stack([p.real, p.imag], -1))
    for g in gs:
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        u_r, s_r = theirs.update(jnp.stack([g.real, g.imag], -1), s_r)
        np.testing.assert_allclose(
            np.asarray(u_o), np.asarray(u_r[..., 0] + 1j * u_r[..., 1]), rtol=1e-12
        )
        assert not np.allclose(np.asarray(u_o), np.asarray(u_t), rtol=1e-3)


def test_optax_rprop_alias_lags_one_step():
    """The same lag in the aliases: optax.rprop(lr) moves at step t by what gradtx.rprop
    (= torch.optim.Rprop) moved at step t-1, nothing where the sign flips at t."""
    p = _float64(PARAMS)
    ours, theirs = gradtx.rprop(0.05), optax.rprop(0.05)
    s_o, s_t = ours.init(p), theirs.init(p)
    prev = jax.tree.map(np.zeros_like, _numpy(p))
    for g in GRADS:
        g = _float64(g)
        flip = _flips(g, gradtx.rprop_prev_signs(s_o[0]))
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        expected = jax.tree.map(lambda f, u: np.where(f, 0.0, u), flip, prev)
        chex.assert_trees_all_equal(u_t, expected)
        prev = _numpy(u_o)


def test_rmsprop_alias_is_torchs_not_optaxs():
    """gradtx.rmsprop follows torch.optim.RMSprop (alpha=0.99, eps outside the root), not
    optax.rmsprop (decay=0.9, eps inside): same name, different defaults and rule. The
    optax form is recipes.optax_rmsprop; with torch's choices the two coincide."""
    torch_form = trajectory(gradtx.rmsprop(0.01))
    optax_form = trajectories(optax.rmsprop(0.01))[0]  # the shapes the variants compiled for
    differ = h.scaled_error(leaves_of(torch_form), leaves_of(optax_form))
    assert differ > 1e-3
    same = rmsprop_like_optax(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    _check_trajectories(
        "gradtx.rmsprop == optax.rmsprop(decay=.99, eps_in_sqrt=False)", "", torch_form, same
    )
