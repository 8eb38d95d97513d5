"""The Rprop tests' shared cases: an objective whose gradients change sign often (with
exact zeros and rises of the loss), the hyperparameters, and gradtx and torch runs that
record params, step sizes and stored signs after every step (``tests/_runners.py``'s
runners with an Rprop ``capture``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import gradtx
from tests import _runners


def run_gradtx(tx, w0, grad_fn, steps, *, with_value=True):
    """Params, step sizes and stored signs after every step; ``grad_fn(w, t) -> (E, g)``
    gives the gradient and (``with_value``: iRprop+'s ``value=``) the loss, on the host
    (``tests/_runners.py``'s ``run_gradtx`` with ``host_grads``, its capture read in the
    compiled step)."""
    w = jnp.asarray(w0)
    state = tx.init(w)
    out = []
    for t in range(steps):
        e, g = grad_fn(np.asarray(w), t)
        value = jnp.asarray(e) if with_value else None
        w, state, sizes, signs = _step(tx, w, state, jnp.asarray(g, w.dtype), value)
        out.append((np.asarray(w), np.asarray(sizes), np.asarray(signs)))
    return tuple(list(x) for x in zip(*out))


@jax.jit
def _step(tx, w, state, g, value):
    """One update and what the tests read after it: one compiled program per transform
    (a static argument, equal when built alike) and signature, shared by every run."""
    updates, state = tx.update(g, state, w, **({} if value is None else {"value": value}))
    state_read = gradtx.rprop_step_sizes(state), gradtx.rprop_prev_signs(state)
    return gradtx.apply_updates(w, updates), state, *state_read


def run_torch(w0, grad_fn, steps, *, foreach=False, **kw):
    """torch.optim.Rprop on the same gradients: params, step sizes, sign of ``prev``."""

    def capture(opt, tensors):
        (p,) = tensors
        step_size, prev = opt.state[p]["step_size"], opt.state[p]["prev"]
        if prev.is_complex():  # torch keeps complex state; ours is its real view
            step_size, prev = torch.view_as_real(step_size), torch.view_as_real(prev)
        sign = torch.sign(prev).numpy().astype(np.int8)
        return p.detach().numpy().copy(), step_size.numpy().copy(), sign

    make_opt = _runners.torch_optimizer(torch.optim.Rprop, foreach=foreach, **kw)
    out = _runners.run_torch(make_opt, w0, lambda w, t: grad_fn(w, t)[1], steps, capture=capture)
    return tuple(list(x) for x in zip(*out))


def assert_same_bits(ours, theirs, what):
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert a.dtype == b.dtype, (what, t, a.dtype, b.dtype)
        if not np.array_equal(a, b, equal_nan=True):
            i = np.flatnonzero(a != b)[0]
            raise AssertionError(
                f"{what} differ at step {t}, index {i}: {a.flat[i]!r} vs {b.flat[i]!r}"
            )


# --------------------------------------------------------------------------------------
# The objective whose gradients change sign often, with zeros and loss rises
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


def w0_of(dtype):
    return np.random.default_rng(2).uniform(-1.0, 1.0, N).astype(dtype)


HYPER = {"lr": 0.03, "etas": (0.5, 1.2), "step_sizes": (1e-3, 0.4)}


def rprop_tx(variant, hyper=HYPER, **kw):
    return gradtx.rprop(hyper["lr"], hyper["etas"], hyper["step_sizes"], variant=variant, **kw)
