"""Run a real torch.optim optimizer side by side with gradtx.

Both sides get their gradients from the same function (``grad_fn``, JAX, on the
current params), so a difference in trajectories is a difference in the optimizers.
Params are pytrees; torch sees their leaves in ``jax.tree_util`` order.
"""

from __future__ import annotations

import jax
import numpy as np
import torch

import gradtx
from tests.parity import _harness as h


def run_torch(opt_cls, kwargs, params, grad_fn, steps, nudge=None):
    """Return the params (as NumPy pytrees) after each of ``steps`` torch steps; ``nudge``
    (``_harness.NUDGES``): torch starts from params, or gets every gradient, one ulp up."""
    leaves, treedef = jax.tree.flatten(h.nudge(params) if nudge == "params" else params)
    tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
    opt = opt_cls(tensors, **kwargs)
    out = []
    for _ in range(steps):
        current = treedef.unflatten([t.detach().numpy().copy() for t in tensors])
        grads = jax.tree.leaves(grad_fn(current))
        grads = h.nudge(grads) if nudge == "grads" else grads
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(np.array(g))
        opt.step()
        out.append(treedef.unflatten([t.detach().numpy().copy() for t in tensors]))
    return out


def run_gradtx(tx, params, grad_fn, steps, *, jit=True):
    """Return the params after each of ``steps`` gradtx steps."""

    def step(p, s):
        updates, s = tx.update(grad_fn(p), s, p)
        return gradtx.apply_updates(p, updates), s

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    out = []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(jax.tree.map(np.asarray, params))
    return out


def scaled_error(ours, theirs):
    """max over steps of max|ours - theirs| / max|theirs| (DESIGN.md's parity metric), for
    sequences (over steps) of pytrees; a NaN counts as an infinite error."""
    return h.scaled_error([jax.tree.leaves(a) for a in ours], [jax.tree.leaves(b) for b in theirs])


def check(reference, config, ours, theirs, nudged, steps):
    """``_harness.check_against`` for sequences (over steps) of pytrees: ``ours`` against
    ``theirs`` within the tolerance of ``nudged``, the reference's runs with each of
    ``_harness.NUDGES`` (``None``: bit for bit)."""
    dtypes = [np.asarray(x).dtype for x in jax.tree.leaves(theirs[0])]
    flat = lambda run: [jax.tree.leaves(x) for x in run]  # noqa: E731
    nudged = None if nudged is None else [flat(n) for n in nudged]
    h.check_against(reference, config, dtypes, flat(ours), flat(theirs), nudged, steps)
