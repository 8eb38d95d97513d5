"""NumPy reference implementations, written from the published update rules.

Independent of gradtx (no JAX here) and of torch's code: each function follows the
pseudo-code of the paper or of the reference's documentation, cited in its docstring.
Each takes ``params`` (a float array), a ``grad_fn(params, step) -> grad`` and returns the
list of params after every step, computed in the params' dtype.
"""

from __future__ import annotations

import numpy as np


def rprop(
    params, grad_fn, steps, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), maximize=False
):
    """iRprop- as in the torch.optim.Rprop documentation's pseudo-code (Riedmiller &
    Braun 1993; Igel & Hüsken 2000): step size eta_t <- min(eta*eta+, max) if
    g_prev*g > 0, max(eta*eta-, min) if < 0, else eta; where g_prev*g < 0 the gradient
    is set to 0; theta <- theta - eta*sign(g); g_prev <- g. Initial eta = lr, clipped
    into [min, max] on the first step (the 'otherwise' branch keeps it; torch clamps
    every step, and the docs' min/max bounds hold at every step)."""
    dt = params.dtype.type
    eta_minus, eta_plus = dt(etas[0]), dt(etas[1])
    lo, hi = dt(step_sizes[0]), dt(step_sizes[1])
    theta = params.copy()
    step = np.full_like(theta, dt(lr))
    prev = np.zeros_like(theta)
    out = []
    for t in range(steps):
        g = np.asarray(grad_fn(theta, t), dtype=theta.dtype)
        if maximize:
            g = -g
        prod = np.sign(g) * np.sign(prev)
        factor = np.where(prod > 0, eta_plus, np.where(prod < 0, eta_minus, dt(1)))
        step = np.clip(step * factor, lo, hi)
        g = np.where(prod < 0, dt(0), g)
        theta = theta - np.sign(g) * step
        prev = g
        out.append(theta.copy())
    return out


def rmsprop(
    params,
    grad_fn,
    steps,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    maximize=False,
):
    """RMSprop as in the torch.optim.RMSprop documentation's pseudo-code (Hinton 2012;
    centered form: Graves 2013): g <- g + wd*theta; v <- alpha v + (1-alpha) g^2;
    centered: g_avg <- alpha g_avg + (1-alpha) g, v~ = v - g_avg^2; momentum > 0:
    b <- mu b + g/(sqrt(v~)+eps), theta <- theta - lr b; else theta <- theta - lr
    g/(sqrt(v~)+eps)."""
    dt = params.dtype.type
    theta = params.copy()
    v = np.zeros_like(theta)
    g_avg = np.zeros_like(theta)
    b = np.zeros_like(theta)
    out = []
    for t in range(steps):
        g = np.asarray(grad_fn(theta, t), dtype=theta.dtype)
        if maximize:
            g = -g
        if weight_decay:
            g = g + dt(weight_decay) * theta
        v = dt(alpha) * v + dt(1 - alpha) * g * g
        v_tilde = v
        if centered:
            g_avg = dt(alpha) * g_avg + dt(1 - alpha) * g
            v_tilde = v - g_avg * g_avg
        d = g / (np.sqrt(v_tilde) + dt(eps))
        if momentum > 0:
            b = dt(momentum) * b + d
            theta = theta - dt(lr) * b
        else:
            theta = theta - dt(lr) * d
        out.append(theta.copy())
    return out
