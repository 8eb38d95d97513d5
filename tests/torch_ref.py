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
from tests.parity import _harness


def run_torch(opt_cls, kwargs, params, grad_fn, steps):
    """Return the params (as NumPy pytrees) after each of ``steps`` torch steps."""
    leaves, treedef = jax.tree.flatten(params)
    tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]
    opt = opt_cls(tensors, **kwargs)
    out = []
    for _ in range(steps):
        current = treedef.unflatten([t.detach().numpy().copy() for t in tensors])
        grads = jax.tree.leaves(grad_fn(current))
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
    return _harness.scaled_error(
        [jax.tree.leaves(a) for a in ours], [jax.tree.leaves(b) for b in theirs]
    )
