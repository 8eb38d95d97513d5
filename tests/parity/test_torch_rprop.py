"""The default Rprop (iRprop-) against torch.optim.Rprop run live: bit for bit in float32
and float64 (params, step sizes, stored signs), NaN and subnormal gradients included; and
where torch differs on purpose (the product of two tiny gradients underflowing to zero).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradtx
from tests import reference
from tests.rprop_cases import (
    HYPER,
    assert_same_bits,
    objective,
    run_gradtx,
    run_torch,
    w0_of,
)

# --------------------------------------------------------------------------------------
# The default against torch.optim.Rprop, live
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_default_matches_torch_bit_for_bit(dtype, foreach):
    steps = 150
    w0 = w0_of(dtype)
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
    w0 = w0_of(dtype)

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
    w0 = w0_of(dtype)[:12]
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
    by_signs = reference.rprop_variant("irprop-", w0, grad_fn, 2, sign_product=True, **hyper)
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
