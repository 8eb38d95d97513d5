"""NumPy reference implementations of every published rule gradtx reproduces, written
from the published pseudo-code: independent of gradtx (no JAX here) and of torch's code;
each function cites the paper or the documentation page it follows.

* torch.optim's documentation: :func:`rprop` (iRprop-), :func:`rmsprop` (plain, centered,
  momentum, weight decay);
* the Rprop papers, weight by weight: :func:`rprop_variant` (Rprop+, Rprop-, iRprop+,
  iRprop-);
* Lucid's and Dragon's API pages, one step of one leaf at a time (run with
  :func:`run_per_leaf`): :func:`lucid_rprop_page`, :func:`lucid_rmsprop_page`,
  :func:`dragon_rmsprop_page`.

The page-style rules are one step of one array, ``step(theta, g, state, dt, **hyper) ->
(theta, state)``; :func:`trajectory` runs one from ``params`` (a float array) with a
``grad_fn(params, step) -> grad`` and returns the list of params after every step,
computed in the params' dtype (:func:`rprop`, :func:`rmsprop`); :func:`run_per_leaf`
runs one over every leaf of a parity ``Problem``.
"""

from __future__ import annotations

import numpy as np


def trajectory(step_fn, params, grad_fn, steps, maximize=False, **kw):
    """Params after each of ``steps`` steps of ``step_fn(theta, g, state, dt, **kw) ->
    (theta, state)`` (``state`` a dict, empty at first; ``dt`` the params' scalar type),
    gradients ``grad_fn(theta, t)`` in the params' dtype, negated with ``maximize``."""
    theta, state, out = params.copy(), {}, []
    for t in range(steps):
        g = np.asarray(grad_fn(theta, t), dtype=theta.dtype)
        theta, state = step_fn(theta, -g if maximize else g, state, params.dtype.type, **kw)
        out.append(theta.copy())
    return out


def rprop(params, grad_fn, steps, maximize=False, **kw):
    """:func:`rprop_step` from ``params`` (see :func:`trajectory`)."""
    return trajectory(rprop_step, params, grad_fn, steps, maximize, **kw)


def rprop_step(theta, g, st, dt, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    """iRprop- as in the torch.optim.Rprop documentation's pseudo-code (Riedmiller &
    Braun 1993; Igel & Hüsken 2000): step size eta_t <- min(eta*eta+, max) if
    g_prev*g > 0, max(eta*eta-, min) if < 0, else eta; where g_prev*g < 0 the gradient
    is set to 0; theta <- theta - eta*sign(g); g_prev <- g. Initial eta = lr, clipped
    into [min, max] on the first step (the 'otherwise' branch keeps it; torch clamps
    every step, and the docs' min/max bounds hold at every step)."""
    step = st.get("step", np.full_like(theta, dt(lr)))
    prod = np.sign(g) * np.sign(st.get("prev", np.zeros_like(theta)))
    factor = np.where(prod > 0, dt(etas[1]), np.where(prod < 0, dt(etas[0]), dt(1)))
    step = np.clip(step * factor, dt(step_sizes[0]), dt(step_sizes[1]))
    g = np.where(prod < 0, dt(0), g)
    return theta - np.sign(g) * step, {"step": step, "prev": g}


def rmsprop(params, grad_fn, steps, maximize=False, **kw):
    """:func:`rmsprop_step` from ``params`` (see :func:`trajectory`)."""
    return trajectory(rmsprop_step, params, grad_fn, steps, maximize, **kw)


def rmsprop_step(
    theta, g, st, dt, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False
):
    """RMSprop as in the torch.optim.RMSprop documentation's pseudo-code (Hinton 2012;
    centered form: Graves 2013): g <- g + wd*theta; v <- alpha v + (1-alpha) g^2;
    centered: g_avg <- alpha g_avg + (1-alpha) g, v~ = v - g_avg^2; momentum > 0:
    b <- mu b + g/(sqrt(v~)+eps), theta <- theta - lr b; else theta <- theta - lr
    g/(sqrt(v~)+eps)."""
    zeros = np.zeros_like(theta)
    if weight_decay:
        g = g + dt(weight_decay) * theta
    v = dt(alpha) * st.get("v", zeros) + dt(1 - alpha) * g * g
    new, v_tilde = {"v": v}, v
    if centered:
        g_avg = new["g_avg"] = dt(alpha) * st.get("g_avg", zeros) + dt(1 - alpha) * g
        v_tilde = v - g_avg * g_avg
    d = g / (np.sqrt(v_tilde) + dt(eps))
    if momentum > 0:
        d = new["b"] = dt(momentum) * st.get("b", zeros) + d
    return theta - dt(lr) * d, new


# ----------------------------------------------------------------------------------------
# The four Rprop variants, weight by weight, as the papers write them
# ----------------------------------------------------------------------------------------


def _sgn(x):
    """sign(x) with sign(NaN) = 0 (torch's convention; NumPy's np.sign(NaN) is NaN)."""
    return x.dtype.type(0) if np.isnan(x) else np.sign(x)


def rprop_variant(
    variant, w0, grad_fn, steps, lr, etas, step_sizes, *, sign_product=False, then=()
):
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

    ``then``: further phases ``(variant, steps, etas, step_sizes)`` that continue the
    same weights, Δ, ∂', Δw and E_prev under other hyperparameters or another variant
    (the pseudo-code knows no boundary between them). The Rprop- branch also records its
    move as Δw, which it never reads itself.
    """
    dt = w0.dtype.type
    w = w0.astype(w0.dtype).ravel().copy()
    n = w.size
    delta = [min(max(dt(lr), dt(step_sizes[0])), dt(step_sizes[1]))] * n
    g_prev = [dt(0)] * n
    dw = [dt(0)] * n
    e_prev = np.inf
    ws, deltas = [], []
    branches = {"+": 0, "-": 0, "0": 0, "undo": 0, "keep": 0}
    phases = [(variant, steps, etas, step_sizes), *then]
    schedule = [phase for phase in phases for _ in range(phase[1])]
    for t, (variant, _, etas, step_sizes) in enumerate(schedule):
        eta_minus, eta_plus = dt(etas[0]), dt(etas[1])
        d_min, d_max = dt(step_sizes[0]), dt(step_sizes[1])

        def clip(x, d_min=d_min, d_max=d_max):  # torch clamps every step: a no-op unless
            return min(max(x, d_min), d_max)  # the bounds changed between phases

        e, g = grad_fn(w.reshape(w0.shape).copy(), t)
        g = np.asarray(g, dtype=w0.dtype).ravel()
        for i in range(n):
            gi = g[i]
            with np.errstate(all="ignore"):
                p = _sgn(g_prev[i]) * _sgn(gi) if sign_product else g_prev[i] * gi
            if variant in ("rprop+", "irprop+"):
                if p > 0:
                    branches["+"] += 1
                    delta[i] = clip(delta[i] * eta_plus)
                    dw[i] = -_sgn(gi) * delta[i]
                    w[i] = w[i] + dw[i]
                    g_prev[i] = gi
                elif p < 0:
                    branches["-"] += 1
                    delta[i] = clip(delta[i] * eta_minus)
                    if variant == "rprop+" or e > e_prev:
                        branches["undo"] += 1
                        w[i] = w[i] - dw[i]
                    else:
                        branches["keep"] += 1
                    g_prev[i] = dt(0)
                else:
                    branches["0"] += 1
                    delta[i] = clip(delta[i])
                    dw[i] = -_sgn(gi) * delta[i]
                    w[i] = w[i] + dw[i]
                    g_prev[i] = gi
            else:
                if p > 0:
                    branches["+"] += 1
                    delta[i] = clip(delta[i] * eta_plus)
                elif p < 0:
                    branches["-"] += 1
                    delta[i] = clip(delta[i] * eta_minus)
                    if variant == "irprop-":
                        gi = dt(0)
                else:
                    branches["0"] += 1
                    delta[i] = clip(delta[i])
                dw[i] = -_sgn(gi) * delta[i]
                w[i] = w[i] + dw[i]
                g_prev[i] = gi
        e_prev = e
        ws.append(w.reshape(w0.shape).copy())
        deltas.append(np.array(delta, dtype=w0.dtype).reshape(w0.shape))
    return ws, deltas, branches


# ----------------------------------------------------------------------------------------
# Lucid's and Dragon's pages, one step of one leaf
# ----------------------------------------------------------------------------------------


def run_per_leaf(step_fn, prob, steps, **kw):
    """Run ``step_fn(theta, g, state, **kw) -> (theta, state)`` leaf by leaf (each leaf
    its own state dict), gradients from ``prob`` (a :class:`tests._runners.Problem`);
    list over steps of leaf lists."""
    thetas = [x.copy() for x in prob.leaves["theta"]]
    states = [{} for _ in thetas]
    out = []
    for t in range(steps):
        for i, theta in enumerate(thetas):
            g = prob.grad(i, theta, t)
            thetas[i], states[i] = step_fn(theta, g, states[i], theta.dtype.type, **kw)
        out.append([x.copy() for x in thetas])
    return out


def lucid_rprop_page(theta, g, st, dt, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    """lucid.optim.Rprop's page: Delta_t = min(Delta eta+, max) if g_t g_{t-1} > 0,
    max(Delta eta-, min) if < 0, Delta_{t-1} otherwise; theta -= sign(g_t) Delta_t.
    g_{t-1} is the previous gradient as received (the page zeroes nothing); Delta_0 = lr."""
    step = st.get("step", np.full_like(theta, dt(lr)))
    prev = st.get("prev", np.zeros_like(theta))
    prod = np.sign(g * prev)
    step = np.where(prod > 0, np.minimum(step * dt(etas[1]), dt(step_sizes[1])), step)
    step = np.where(prod < 0, np.maximum(step * dt(etas[0]), dt(step_sizes[0])), step)
    return theta - np.sign(g) * step, {"step": step, "prev": g}


def lucid_rmsprop_page(
    theta, g, st, dt, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False
):
    """lucid.optim.RMSprop's page: E[g^2]_t = alpha E[g^2]_{t-1} + (1 - alpha) g^2, L2
    weight decay added to the gradient, a velocity (momentum buffer) v_t, and with
    ``centered`` the mean of the gradients subtracted. The page's formulas did not
    survive in the seed; the two choices they leave open are taken from Lucid's source
    (ChanLumerico/lucid, lucid/optim/prop.py): eps inside the root, and
    v_t = momentum v_{t-1} + g / sqrt(avg + eps), theta -= lr v_t."""
    if weight_decay:
        g = g + dt(weight_decay) * theta
    sq = dt(alpha) * st.get("sq", np.zeros_like(theta)) + dt(1 - alpha) * g * g
    new = {"sq": sq}
    avg = sq
    if centered:
        new["ga"] = dt(alpha) * st.get("ga", np.zeros_like(theta)) + dt(1 - alpha) * g
        avg = sq - new["ga"] ** 2
    d = g / np.sqrt(avg + dt(eps))
    if momentum:
        d = new["buf"] = dt(momentum) * st.get("buf", np.zeros_like(theta)) + d
    return theta - dt(lr) * d, new


def dragon_rmsprop_page(
    theta,
    g,
    st,
    dt,
    lr=0.01,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    scale=1.0,
    clip_norm=0.0,
    clipped=None,
):
    """dragon.vm.torch.optim.RMSprop's page: RMSprop(g) = -m_t with
    v_t = alpha v_{t-1} + (1 - alpha) g^2, m_t = momentum m_{t-1} + lr g / (sqrt(v_t) + eps).
    ``scale``: "the scaling factor to gradient"; ``clip_norm``: "the maximum L2 norm to
    clip gradient"; ``weight_decay``: "the L2 penalty factor to weight". The page gives no
    order or scope; Dragon's UpdateOpBase::TransformGrad scales, then clips each
    parameter's gradient by its own norm, and its kernel then adds wd * theta: so here."""
    g = g * dt(scale)
    if clip_norm > 0:
        norm = np.sqrt(np.sum(g * g))
        if norm > clip_norm:
            g = g * (dt(clip_norm) / norm)
            if clipped is not None:
                clipped.append(1)
    if weight_decay:
        g = g + dt(weight_decay) * theta
    v = dt(alpha) * st.get("v", np.zeros_like(theta)) + dt(1 - alpha) * g * g
    m = dt(momentum) * st.get("m", np.zeros_like(theta)) + dt(lr) * g / (np.sqrt(v) + dt(eps))
    return theta - m, {"v": v, "m": m}
