"""The Rprop family (``gradtx.rprop``, ``gradtx.scale_by_rprop``): iRprop- (default),
Rprop-, Rprop+, iRprop+.

* Each variant against an independent NumPy reference written weight by weight from the
  papers' pseudo-code (``tests/reference.py``: Riedmiller & Braun 1993; Igel & Hüsken
  2000, 2003), exact in float64 (and float32).
* State size, the ``value=`` plumbing of iRprop+, jit/vmap, argument checks.

The default against torch.optim.Rprop, live: ``tests/parity/test_torch_rprop.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from tests import reference
from tests.rprop_cases import (
    HYPER,
    assert_same_bits,
    objective,
    rprop_tx,
    run_gradtx,
    w0_of,
)

VARIANTS = gradtx.RPROP_VARIANTS

# --------------------------------------------------------------------------------------
# Every variant equals its reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_numpy_reference_exactly(variant, dtype):
    steps = 150
    w0 = w0_of(dtype)
    ref_w, ref_d, branches = reference.rprop_variant(variant, w0, objective, steps, **HYPER)
    ws, ds, _ = run_gradtx(rprop_tx(variant), w0, objective, steps)
    assert_same_bits(ws, ref_w, f"{variant} params")
    assert_same_bits(ds, ref_d, f"{variant} step sizes")
    # the test exercises every branch, both bounds, and (for iRprop+) both loss outcomes
    assert branches["+"] > 100 and branches["-"] > 100 and branches["0"] > 100, branches
    all_d = np.stack(ref_d)
    assert (all_d == dtype(HYPER["step_sizes"][0])).any()
    assert (all_d == dtype(HYPER["step_sizes"][1])).any()
    if variant == "irprop+":
        assert branches["undo"] > 10 and branches["keep"] > 10, branches


@settings(max_examples=25, deadline=None)
@given(
    variant=st.sampled_from(VARIANTS),
    grads=st.lists(
        st.lists(
            st.sampled_from([-2.0, -0.5, 0.0, 0.0, 0.5, 2.0, math.nan]), min_size=3, max_size=3
        ),
        min_size=1,
        max_size=12,
    ),
    losses=st.lists(st.sampled_from([0.0, 1.0, 2.0, math.nan]), min_size=12, max_size=12),
    lr=st.sampled_from([1e-4, 0.05, 0.25, 3.0]),
)
def test_variants_match_reference_on_arbitrary_sign_patterns(variant, grads, losses, lr):
    """Zeros, NaNs, repeated and alternating signs, lr below/inside/above the bounds."""
    table = np.array(grads, np.float64)

    def grad_fn(w, t):
        return np.float64(losses[t]), table[t]

    hyper = {"lr": lr, "etas": (0.5, 1.2), "step_sizes": (1e-3, 1.0)}
    w0 = np.array([0.25, -1.0, 2.0])
    ref_w, ref_d, _ = reference.rprop_variant(variant, w0, grad_fn, len(table), **hyper)
    ws, ds, _ = run_gradtx(rprop_tx(variant, hyper), w0, grad_fn, len(table))
    assert_same_bits(ws, ref_w, "params")
    assert_same_bits(ds, ref_d, "step sizes")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lr", [1e-5, 2.0])
def test_first_step_clamps_learning_rate_into_the_bounds(variant, lr):
    hyper = {"lr": lr, "etas": (0.5, 1.2), "step_sizes": (1e-3, 0.5)}
    w0 = np.array([1.0, -1.0, 0.0])

    def grad_fn(w, t):
        return np.float64(1.0), np.array([3.0, -0.1, 0.0])

    ws, ds, _ = run_gradtx(rprop_tx(variant, hyper), w0, grad_fn, 1)
    clamped = min(max(lr, 1e-3), 0.5)
    np.testing.assert_array_equal(ds[0], np.full(3, clamped))
    np.testing.assert_array_equal(ws[0], w0 - np.sign([3.0, -0.1, 0.0]) * clamped)
    assert_same_bits(ws, reference.rprop_variant(variant, w0, grad_fn, 1, **hyper)[0], "params")


# --------------------------------------------------------------------------------------
# Backtracking: Rprop+ always, iRprop+ only when the loss rose
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant, loss_after, undone",
    [
        ("rprop+", 0.5, True),
        ("rprop+", 2.0, True),
        ("irprop+", 2.0, True),  # E_1 > E_0: undo
        ("irprop+", 1.0, False),  # E_1 = E_0: not worse, keep
        ("irprop+", 0.5, False),
        ("irprop+", math.nan, False),  # NaN is never "worse"
        ("irprop-", 2.0, False),
        ("rprop-", 2.0, False),
    ],
)
def test_backtracking_only_where_the_rule_says(variant, loss_after, undone):
    """w0 = 1, Δ0 = 0.25 (exact in binary): step 1 moves to 0.75; step 2 sees the gradient
    flip. Undoing restores exactly 1.0; Rprop- moves on by Δ·η- = 0.125 to 0.875."""
    hyper = {"lr": 0.25, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}
    grads, losses = [1.0, -1.0], [1.0, loss_after]

    def grad_fn(w, t):
        return np.float64(losses[t]), np.array([grads[t]])

    ws, ds, signs = run_gradtx(rprop_tx(variant, hyper), np.array([1.0]), grad_fn, 2)
    assert ws[0][0] == 0.75
    expected = {True: 1.0, False: 0.75}[undone] if variant != "rprop-" else 0.875
    assert ws[1][0] == expected
    assert ds[1][0] == 0.125  # every variant shrinks Δ on a sign flip
    assert signs[1][0] == (-1 if variant == "rprop-" else 0)  # g' = 0 except in Rprop-


def test_irprop_plus_compares_with_the_previous_loss_not_the_first():
    """E: 3, 1, 2 with gradients +, +, -: the flip at step 3 follows a rise (1 -> 2) even
    though E_2 < E_0, so the move of step 2 is undone."""
    hyper = {"lr": 0.25, "etas": (0.5, 2.0), "step_sizes": (1e-6, 50.0)}
    grads, losses = [1.0, 1.0, -1.0], [3.0, 1.0, 2.0]

    def grad_fn(w, t):
        return np.float64(losses[t]), np.array([grads[t]])

    ws, _, _ = run_gradtx(rprop_tx("irprop+", hyper), np.array([2.0]), grad_fn, 3)
    assert ws[0][0] == 1.75 and ws[1][0] == 1.25  # Δ: 0.25, then 0.5
    assert ws[2][0] == 1.75  # back to where step 2 started


# --------------------------------------------------------------------------------------
# State size
# --------------------------------------------------------------------------------------


def _bytes_per_param(variant, params):
    state = gradtx.scale_by_rprop(0.01, variant=variant).init(params)
    n_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
    return n_bytes / sum(x.size for x in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_bytes_per_float32_param(variant):
    params = {"w": jnp.zeros((300, 100), jnp.float32), "b": jnp.zeros(100, jnp.float32)}
    n = 30_100
    scalar_bytes = jnp.zeros((), jax.dtypes.canonicalize_dtype(jnp.float64)).nbytes
    # one packed integer per weight; the "+" variants a pending byte and η-, Δmin, Δmax
    # as scalars, and iRprop+ the previous loss
    per_weight = {"irprop-": 4, "rprop-": 4, "rprop+": 5, "irprop+": 5}[variant]
    scalars = {"irprop-": 0, "rprop-": 0, "rprop+": 3, "irprop+": 4}[variant]
    expected = per_weight + scalars * scalar_bytes / n
    assert _bytes_per_param(variant, params) == expected
    # torch keeps prev and step_size in the param dtype (8 bytes) plus a step counter
    p = torch.nn.Parameter(torch.zeros(n))
    opt = torch.optim.Rprop([p])
    p.grad = torch.ones(n)
    opt.step()
    torch_bytes = sum(v.numel() * v.element_size() for v in opt.state[p].values())
    assert torch_bytes / n > 8.0 > _bytes_per_param(variant, params)


# --------------------------------------------------------------------------------------
# The value= plumbing, jit/vmap, pytrees, arguments
# --------------------------------------------------------------------------------------


def test_irprop_plus_without_value_raises_a_clear_error_when_traced():
    params = {"w": jnp.ones(3)}
    for tx in (gradtx.rprop(variant="irprop+"), gradtx.scale_by_rprop(0.1, variant="irprop+")):
        state = tx.init(params)
        with pytest.raises(TypeError, match="value="):
            jax.jit(tx.update)(params, state, params)
        with pytest.raises(ValueError, match="scalar"):
            tx.update(params, state, params, value=jnp.ones(2))


def test_irprop_plus_maximize_treats_a_fall_of_the_objective_as_worse():
    """Maximising E with maximize=True equals minimising -E (gradient and value negated)."""
    w0 = w0_of(np.float64)

    def neg(w, t):
        e, g = objective(w, t)
        return -e, -g

    a = run_gradtx(rprop_tx("irprop+", maximize=True), w0, neg, 80)
    b = run_gradtx(rprop_tx("irprop+"), w0, objective, 80)
    assert_same_bits(a[0], b[0], "params")


def test_other_variants_ignore_value():
    w0 = w0_of(np.float64)
    for variant in ("irprop-", "rprop-", "rprop+"):
        a = run_gradtx(rprop_tx(variant), w0, objective, 30, with_value=False)
        b = run_gradtx(rprop_tx(variant), w0, objective, 30, with_value=True)
        assert_same_bits(a[0], b[0], variant)


def _tree_loss(params, target):
    return jnp.sum((params["a"] - target) ** 2) + jnp.sum(jnp.cos(3 * params["b"]))


# The loss and its gradient compiled once for every variant (op by op, each of its
# operations is a program of its own); the transform's update stays eager in the eager run.
_tree_value_and_grad = jax.jit(jax.value_and_grad(_tree_loss))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pytree_jit_vmap_and_no_mutation(variant):
    """A tree with a None leaf; jit equals eager; vmap over 3 problems (each its own loss
    for iRprop+) equals running them one by one; inputs are left as they were."""
    tx = gradtx.rprop(0.1, variant=variant)
    rng = np.random.default_rng(5)
    targets = rng.standard_normal((3, 4))

    def step(params, state, target):
        e, g = _tree_value_and_grad(params, target)
        updates, state = tx.update(g, state, params, value=e)
        return gradtx.apply_updates(params, updates), state

    def run(params, target, stepper):
        state = tx.init(params)
        for _ in range(25):
            params, state = stepper(params, state, target)
        return params, state

    p0 = {"a": jnp.zeros(4), "b": jnp.linspace(-1, 1, 2), "c": None}
    eager = [run(p0, jnp.asarray(t), step) for t in targets]
    jitted = [run(p0, jnp.asarray(t), jax.jit(step)) for t in targets]
    batch = jax.tree.map(lambda *x: jax.device_put(np.stack(x)), *[p0] * 3)
    vstate = jax.jit(jax.vmap(tx.init))(batch)  # one program (op by op: one per operation)
    vstep = jax.jit(jax.vmap(step))
    for _ in range(25):
        batch, vstate = vstep(batch, vstate, jnp.asarray(targets))
    for i in range(3):
        for key in "ab":
            np.testing.assert_array_equal(eager[i][0][key], jitted[i][0][key])
            np.testing.assert_allclose(batch[key][i], eager[i][0][key], rtol=0, atol=1e-12)
    assert p0["c"] is None and eager[0][0]["c"] is None
    np.testing.assert_array_equal(p0["a"], np.zeros(4))


def test_bad_variant_and_arguments_name_themselves():
    for bad in ("iRprop-", "rprop", None, 3):
        with pytest.raises(ValueError, match="variant"):
            gradtx.rprop(variant=bad)
        with pytest.raises(ValueError, match="variant"):
            gradtx.scale_by_rprop(0.1, variant=bad)
    with pytest.raises(ValueError, match="etas"):
        gradtx.rprop(etas=(1.5, 1.2), variant="rprop+")
    with pytest.raises(ValueError, match="max_step_size"):
        gradtx.scale_by_rprop(0.1, min_step_size=1.0, max_step_size=0.5, variant="irprop+")
