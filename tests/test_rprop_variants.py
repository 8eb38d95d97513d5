"""The Rprop family: iRprop- (default), Rprop-, Rprop+, iRprop+.

* Each variant against an independent NumPy reference written weight by weight from the
  papers' pseudo-code (Riedmiller & Braun 1993; Igel & Hüsken 2000, 2003), exact in
  float64 (and float32).
* The default against torch.optim.Rprop run live: bit for bit in float32 and float64,
  NaN and subnormal gradients included; and where torch differs on purpose (the product
  of two tiny gradients underflowing to zero).
* State size, the ``value=`` plumbing of iRprop+, jit/vmap, argument checks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

VARIANTS = gradtx.RPROP_VARIANTS

# --------------------------------------------------------------------------------------
# NumPy references, one weight at a time, as the papers write them
# --------------------------------------------------------------------------------------


def _sgn(x):
    """sign(x) with sign(NaN) = 0 (torch's convention; NumPy's np.sign(NaN) is NaN)."""
    return x.dtype.type(0) if np.isnan(x) else np.sign(x)


def reference(variant, w0, grad_fn, steps, lr, etas, step_sizes, *, sign_product=False):
    """Run one Rprop variant from its published pseudo-code, weight by weight.

    ``grad_fn(w, t) -> (E, g)``: the loss and the gradient at ``w``. Returns the
    weights and step sizes after every step, and a count of the branches taken.

    Pseudo-code (∂ = ∂E/∂w, ∂' its stored previous value, Δ the step size, Δw the
    last weight change; Riedmiller & Braun 1993 Rprop+, Igel & Hüsken 2000 the rest)::

        Rprop+ / iRprop+:
          if ∂'·∂ > 0:  Δ = min(Δ·η+, Δmax); Δw = -sign(∂)·Δ; w = w + Δw; ∂' = ∂
          elif ∂'·∂ < 0:  Δ = max(Δ·η-, Δmin); w = w - Δw  [iRprop+: only if E > E_prev]; ∂' = 0
          else:  Δw = -sign(∂)·Δ; w = w + Δw; ∂' = ∂
        Rprop- / iRprop-:
          if ∂'·∂ > 0:  Δ = min(Δ·η+, Δmax)
          elif ∂'·∂ < 0:  Δ = max(Δ·η-, Δmin);  [iRprop-: ∂ = 0]
          w = w - sign(∂)·Δ; ∂' = ∂

    The papers start from Δ0 inside the bounds; torch clamps lr into them, so Δ0 =
    clip(lr). E_prev starts at +inf. ``sign_product`` judges ∂'·∂ by sign(∂')·sign(∂)
    instead of by the floating-point product (they differ only where it underflows).
    """
    dt = w0.dtype.type
    eta_minus, eta_plus = dt(etas[0]), dt(etas[1])
    d_min, d_max = dt(step_sizes[0]), dt(step_sizes[1])
    w = w0.astype(w0.dtype).ravel().copy()
    n = w.size
    delta = [min(max(dt(lr), d_min), d_max)] * n
    g_prev = [dt(0)] * n
    dw = [dt(0)] * n
    e_prev = np.inf
    ws, deltas = [], []
    branches = {"+": 0, "-": 0, "0": 0, "undo": 0, "keep": 0}
    for t in range(steps):
        e, g = grad_fn(w.reshape(w0.shape).copy(), t)
        g = np.asarray(g, dtype=w0.dtype).ravel()
        for i in range(n):
            gi = g[i]
            with np.errstate(all="ignore"):
                p = _sgn(g_prev[i]) * _sgn(gi) if sign_product else g_prev[i] * gi
            if variant in ("rprop+", "irprop+"):
                if p > 0:
                    branches["+"] += 1
                    delta[i] = min(delta[i] * eta_plus, d_max)
                    dw[i] = -_sgn(gi) * delta[i]
                    w[i] = w[i] + dw[i]
                    g_prev[i] = gi
                elif p < 0:
                    branches["-"] += 1
                    delta[i] = max(delta[i] * eta_minus, d_min)
                    if variant == "rprop+" or e > e_prev:
                        branches["undo"] += 1
                        w[i] = w[i] - dw[i]
                    else:
                        branches["keep"] += 1
                    g_prev[i] = dt(0)
                else:
                    branches["0"] += 1
                    dw[i] = -_sgn(gi) * delta[i]
                    w[i] = w[i] + dw[i]
                    g_prev[i] = gi
            else:
                if p > 0:
                    branches["+"] += 1
                    delta[i] = min(delta[i] * eta_plus, d_max)
                elif p < 0:
                    branches["-"] += 1
                    delta[i] = max(delta[i] * eta_minus, d_min)
                    if variant == "irprop-":
                        gi = dt(0)
                else:
                    branches["0"] += 1
                w[i] = w[i] - _sgn(gi) * delta[i]
                g_prev[i] = gi
        e_prev = e
        ws.append(w.reshape(w0.shape).copy())
        deltas.append(np.array(delta, dtype=w0.dtype).reshape(w0.shape))
    return ws, deltas, branches


# --------------------------------------------------------------------------------------
# Running gradtx and torch on the same gradients
# --------------------------------------------------------------------------------------


def run_gradtx(tx, w0, grad_fn, steps, *, with_value=True):
    """Params, step sizes and stored signs after every step; gradients from ``grad_fn``."""

    @jax.jit
    def step(params, state, g, e):
        kw = {"value": e} if with_value else {}
        updates, state = tx.update(g, state, params, **kw)
        return gradtx.apply_updates(params, updates), state

    params = jnp.asarray(w0)
    state = tx.init(params)
    ws, deltas, signs = [], [], []
    for t in range(steps):
        e, g = grad_fn(np.asarray(params), t)
        params, state = step(params, state, jnp.asarray(g, w0.dtype), jnp.asarray(e))
        ws.append(np.asarray(params))
        deltas.append(np.asarray(gradtx.rprop_step_sizes(state)))
        signs.append(np.asarray(gradtx.rprop_prev_signs(state)))
    return ws, deltas, signs


def run_torch(w0, grad_fn, steps, *, foreach=False, **kw):
    """torch.optim.Rprop on the same gradients: params, step sizes, sign of ``prev``."""
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.Rprop([p], foreach=foreach, **kw)
    ws, deltas, signs = [], [], []
    for t in range(steps):
        _, g = grad_fn(p.detach().numpy().copy(), t)
        p.grad = torch.from_numpy(np.asarray(g, dtype=w0.dtype).copy())
        opt.step()
        step_size, prev = opt.state[p]["step_size"], opt.state[p]["prev"]
        if prev.is_complex():  # torch keeps complex state; ours is its real view
            step_size, prev = torch.view_as_real(step_size), torch.view_as_real(prev)
        ws.append(p.detach().numpy().copy())
        deltas.append(step_size.numpy().copy())
        signs.append(torch.sign(prev).numpy().astype(np.int8))
    return ws, deltas, signs


def assert_same_bits(ours, theirs, what):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype, (what, t, a.dtype, b.dtype)
        if not np.array_equal(a, b, equal_nan=True):
            i = np.flatnonzero(a != b)[0]
            raise AssertionError(
                f"{what} differ at step {t}, index {i}: {a.flat[i]!r} vs {b.flat[i]!r}"
            )


# --------------------------------------------------------------------------------------
# Objectives whose gradients change sign often, with zeros and loss rises
# --------------------------------------------------------------------------------------

N = 48
_rng = np.random.default_rng(0)
_A = np.concatenate([np.full(8, 0.0), _rng.uniform(0.5, 2.0, N - 8)])  # curvature
_C = _rng.uniform(-6.0, 6.0, N)  # far minima: step sizes grow to the upper bound
_B = np.where(np.arange(N) % 3 == 0, 2.0, 0.0)  # ripples: many local sign flips
_K = _rng.uniform(2.0, 9.0, N)
_S = np.where(np.arange(N) % 4 == 1, 1.5, 0.0)  # noise: random sign flips, steps shrink
_NOISE = np.random.default_rng(1).standard_normal((400, N))
_A[:4] = 0.0
_B[:4] = 0.0
_S[:4] = 0.0  # weights 0..3: gradient exactly zero, always


def objective(w, t):
    """E(w) = Σ a/2 (w-c)² - b/k cos(k w) + noise·w, and its gradient; 1 in 7 steps some
    gradients are exactly 0 (so the next step sees an exactly-zero previous gradient)."""
    dt = w.dtype.type
    a, c, b, k, s = (x.astype(w.dtype) for x in (_A, _C, _B, _K, _S))
    noise = _NOISE[t].astype(w.dtype)
    e = np.sum(a / dt(2) * (w - c) ** 2 - b / k * np.cos(k * w) + s * noise * w)
    g = a * (w - c) + b * np.sin(k * w) + s * noise
    if t % 7 == 3:
        g[4:20:3] = 0.0
    return e, g


def _w0(dtype):
    return np.random.default_rng(2).uniform(-1.0, 1.0, N).astype(dtype)


HYPER = {"lr": 0.03, "etas": (0.5, 1.2), "step_sizes": (1e-3, 0.4)}


def _tx(variant, hyper=HYPER, **kw):
    return gradtx.rprop(hyper["lr"], hyper["etas"], hyper["step_sizes"], variant=variant, **kw)


# --------------------------------------------------------------------------------------
# Every variant equals its reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_numpy_reference_exactly(variant, dtype):
    steps = 150
    w0 = _w0(dtype)
    ref_w, ref_d, branches = reference(variant, w0, objective, steps, **HYPER)
    ws, ds, _ = run_gradtx(_tx(variant), w0, objective, steps)
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
    ref_w, ref_d, _ = reference(variant, w0, grad_fn, len(table), **hyper)
    ws, ds, _ = run_gradtx(_tx(variant, hyper), w0, grad_fn, len(table))
    assert_same_bits(ws, ref_w, "params")
    assert_same_bits(ds, ref_d, "step sizes")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("lr", [1e-5, 2.0])
def test_first_step_clamps_learning_rate_into_the_bounds(variant, lr):
    hyper = {"lr": lr, "etas": (0.5, 1.2), "step_sizes": (1e-3, 0.5)}
    w0 = np.array([1.0, -1.0, 0.0])

    def grad_fn(w, t):
        return np.float64(1.0), np.array([3.0, -0.1, 0.0])

    ws, ds, _ = run_gradtx(_tx(variant, hyper), w0, grad_fn, 1)
    clamped = min(max(lr, 1e-3), 0.5)
    np.testing.assert_array_equal(ds[0], np.full(3, clamped))
    np.testing.assert_array_equal(ws[0], w0 - np.sign([3.0, -0.1, 0.0]) * clamped)
    assert_same_bits(ws, reference(variant, w0, grad_fn, 1, **hyper)[0], "params")


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

    ws, ds, signs = run_gradtx(_tx(variant, hyper), np.array([1.0]), grad_fn, 2)
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

    ws, _, _ = run_gradtx(_tx("irprop+", hyper), np.array([2.0]), grad_fn, 3)
    assert ws[0][0] == 1.75 and ws[1][0] == 1.25  # Δ: 0.25, then 0.5
    assert ws[2][0] == 1.75  # back to where step 2 started


# --------------------------------------------------------------------------------------
# The default against torch.optim.Rprop, live
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_matches_torch_bit_for_bit(dtype, foreach):
    steps = 150
    w0 = _w0(dtype)
    kw = {"lr": HYPER["lr"], "etas": HYPER["etas"], "step_sizes": HYPER["step_sizes"]}
    t_w, t_d, t_s = run_torch(w0, objective, steps, foreach=foreach, **kw)
    ws, ds, ss = run_gradtx(
        gradtx.rprop(**{"learning_rate": kw.pop("lr"), **kw}), w0, objective, steps
    )
    assert_same_bits(ws, t_w, "params")
    assert_same_bits(ds, t_d, "step sizes")
    assert_same_bits(ss, t_s, "stored signs")
    all_d = np.stack(t_d)
    assert (all_d == dtype(1e-3)).sum() > 50 and (all_d == dtype(0.4)).sum() > 50
    grads = np.stack([objective(w, t)[1] for t, w in enumerate([w0, *t_w[:-1]])])
    flips = (np.sign(grads[1:]) * np.sign(grads[:-1]) < 0).mean()
    assert flips > 0.2, flips  # gradients change sign often


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_matches_torch_with_maximize_and_lr_outside_bounds(dtype):
    steps = 100
    w0 = _w0(dtype)

    def neg(w, t):
        e, g = objective(w, t)
        return -e, -g

    for lr in (2.0, 1e-5):
        kw = {"etas": (0.3, 1.5), "step_sizes": (1e-3, 0.4)}
        t_w, t_d, _ = run_torch(w0, neg, steps, lr=lr, maximize=True, **kw)
        ws, ds, _ = run_gradtx(gradtx.rprop(lr, maximize=True, **kw), w0, neg, steps)
        assert_same_bits(ws, t_w, "params")
        assert_same_bits(ds, t_d, "step sizes")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_gradients_match_torch(dtype):
    """torch.sign(NaN) = 0: a NaN gradient moves nothing, keeps Δ, and tells the next step
    nothing (NaN·g = NaN, whose sign is 0). ±inf gradients are ordinary signs."""
    steps = 40
    w0 = _w0(dtype)[:12]
    special = np.random.default_rng(3).choice(
        np.array([np.nan, np.inf, -np.inf, 0.0, 1.0], dtype),
        size=(steps, 12),
        p=[0.2, 0.1, 0.1, 0.1, 0.5],
    )

    def grad_fn(w, t):
        g = np.sin(3 * w + t).astype(dtype)
        g = np.where(special[t] == 1.0, g, special[t])
        return dtype(0), g.astype(dtype)

    t_w, t_d, t_s = run_torch(w0, grad_fn, steps, lr=0.05, step_sizes=(1e-3, 0.2))
    ws, ds, ss = run_gradtx(gradtx.rprop(0.05, step_sizes=(1e-3, 0.2)), w0, grad_fn, steps)
    assert_same_bits(ws, t_w, "params")
    assert_same_bits(ds, t_d, "step sizes")
    assert_same_bits(ss, t_s, "stored signs")
    assert np.isfinite(np.stack(ws)).all()


def test_subnormal_gradients_keep_their_sign_as_in_torch():
    """XLA on CPU flushes subnormals to zero in comparisons; gradtx reads signs from the
    bits, so a float32 gradient of 1e-40 still counts as positive, as in torch."""
    tiny = np.float32(1e-40)
    assert tiny != 0 and tiny < np.finfo(np.float32).tiny  # subnormal
    # every product g·g' is a subnormal or a normal number, never an underflow to 0
    table = np.array([[1.0, -1.0, tiny], [tiny, tiny, 1.0], [-1.0, 2.0, -2.0]], np.float32)

    def grad_fn(w, t):
        return np.float32(0), table[t]

    w0 = np.zeros(3, np.float32)
    t_w, t_d, t_s = run_torch(w0, grad_fn, 3, lr=0.01)
    ws, ds, ss = run_gradtx(gradtx.rprop(0.01), w0, grad_fn, 3)
    assert_same_bits(ws, t_w, "params")
    assert_same_bits(ds, t_d, "step sizes")
    assert_same_bits(ss, t_s, "stored signs")
    assert ws[0][2] == np.float32(-0.01)  # moved by the subnormal gradient's sign
    assert ds[1][0] == np.float32(0.01) * np.float32(1.2)  # 1·tiny > 0: grow
    assert ds[1][1] == np.float32(0.005) and ds[2][0] == np.float32(0.006)  # flips: shrink


@pytest.mark.parametrize("dtype, tiny", [(np.float32, 1e-25), (np.float64, 1e-170)])
def test_underflowing_product_is_judged_by_signs_unlike_torch(dtype, tiny):
    """Where g·g' underflows to 0, torch sees "no information" (Δ kept, g kept, move);
    gradtx (by design, the paper's rule on signs) sees a sign flip: Δ·η-, g' = 0, no move
    for iRprop-. Checked against torch live, and against the reference judged by signs."""
    tiny = dtype(tiny)
    assert tiny * tiny == 0 and tiny != 0
    table = np.array([[tiny, tiny, 1.0], [-tiny, tiny, -1.0]], dtype)

    def grad_fn(w, t):
        return dtype(0), table[t]

    w0 = np.zeros(3, dtype)
    t_w, t_d, _ = run_torch(w0, grad_fn, 2, lr=0.01)
    ws, ds, _ = run_gradtx(gradtx.rprop(0.01), w0, grad_fn, 2)
    hyper = {"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}
    by_signs = reference("irprop-", w0, grad_fn, 2, sign_product=True, **hyper)
    assert_same_bits(ws, by_signs[0], "params")
    assert_same_bits(ds, by_signs[1], "step sizes")
    # index 0: g·g' = -tiny² underflows to -0: torch keeps Δ and moves, gradtx shrinks, stays
    assert t_d[1][0] == dtype(0.01) and t_w[1][0] == t_w[0][0] + dtype(0.01)
    assert ds[1][0] == dtype(0.005) and ws[1][0] == ws[0][0]
    # index 1: +tiny² underflows to 0: torch keeps Δ, gradtx grows it; both move
    assert t_d[1][1] == dtype(0.01) and ds[1][1] == dtype(0.01) * dtype(1.2)
    # index 2 (ordinary gradients) is the same in both
    assert t_w[1][2] == ws[1][2] and t_d[1][2] == ds[1][2]


def test_complex_params_match_torch():
    steps = 60
    rng = np.random.default_rng(4)
    w0 = (rng.standard_normal(6) + 1j * rng.standard_normal(6)).astype(np.complex128)
    target = (rng.standard_normal(6) * 3 + 1j * rng.standard_normal(6)).astype(np.complex128)

    def grad_fn(w, t):
        return np.float64(0), (w - target) + 0.7 * np.exp(1j * t) * (t % 3 - 1)

    t_w, t_d, t_s = run_torch(w0, grad_fn, steps, lr=0.05, step_sizes=(1e-3, 0.5))
    ws, ds, ss = run_gradtx(gradtx.rprop(0.05, step_sizes=(1e-3, 0.5)), w0, grad_fn, steps)
    assert_same_bits(ws, t_w, "params")
    assert_same_bits(ds, t_d, "step sizes (real view)")
    assert_same_bits(ss, t_s, "stored signs (real view)")


def test_block_output_is_optax_one_step_earlier():
    """The block returns u_t = sign(g'_t)·Δ_t (uphill). optax 0.2.8 computes the same u_t
    (its state.prev_updates) but returns it one step later, zeroed where the next
    gradient flips: checked live, with lr inside the bounds (optax does not clip it)."""
    w0 = _w0(np.float64)
    ours, theirs = (
        gradtx.scale_by_rprop(0.03, 0.5, 1.2, 1e-3, 0.4),
        optax.scale_by_rprop(0.03, 0.5, 1.2, 1e-3, 0.4),
    )
    s_ours, s_theirs = ours.init(jnp.asarray(w0)), theirs.init(jnp.asarray(w0))
    ours, theirs = jax.jit(ours.update), jax.jit(theirs.update)
    w, prev_u = w0, np.zeros_like(w0)
    for t in range(60):
        _, g = objective(w, t)
        u, s_ours = ours(jnp.asarray(g), s_ours)
        v, s_theirs = theirs(jnp.asarray(g), s_theirs)
        u, v = np.asarray(u), np.asarray(v)
        np.testing.assert_array_equal(np.asarray(s_theirs.prev_updates), u)
        np.testing.assert_array_equal(
            np.asarray(s_theirs.step_sizes), gradtx.rprop_step_sizes(s_ours)
        )
        flipped = np.sign(prev_u) * np.sign(g) < 0
        np.testing.assert_array_equal(v, np.where(flipped, 0.0, prev_u))
        if t == 0:
            assert not v.any() and u.any()  # optax's first update is zero
        w, prev_u = w - u, u


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
    expected = 4.0 + (scalar_bytes / n if variant == "irprop+" else 0.0)  # packed state
    assert _bytes_per_param(variant, params) == expected
    assert _bytes_per_param(variant, params) <= 4.0 + 8 / n
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
    w0 = _w0(np.float64)

    def neg(w, t):
        e, g = objective(w, t)
        return -e, -g

    a = run_gradtx(_tx("irprop+", maximize=True), w0, neg, 80)
    b = run_gradtx(_tx("irprop+"), w0, objective, 80)
    assert_same_bits(a[0], b[0], "params")


def test_other_variants_ignore_value():
    w0 = _w0(np.float64)
    for variant in ("irprop-", "rprop-", "rprop+"):
        a = run_gradtx(_tx(variant), w0, objective, 30, with_value=False)
        b = run_gradtx(_tx(variant), w0, objective, 30, with_value=True)
        assert_same_bits(a[0], b[0], variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_pytree_jit_vmap_and_no_mutation(variant):
    """A tree with a None leaf; jit equals eager; vmap over 3 problems (each its own loss
    for iRprop+) equals running them one by one; inputs are left as they were."""
    tx = gradtx.rprop(0.1, variant=variant)
    rng = np.random.default_rng(5)
    targets = rng.standard_normal((3, 4))

    def loss(params, target):
        return jnp.sum((params["a"] - target) ** 2) + jnp.sum(jnp.cos(3 * params["b"]))

    def step(params, state, target):
        e, g = jax.value_and_grad(loss)(params, target)
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
    batch = jax.tree.map(lambda *x: jnp.stack(x), *[p0] * 3)
    vstate = jax.vmap(tx.init)(batch)
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
