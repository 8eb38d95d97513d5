r"""The four published Rprop rules, per weight, beside their pseudo-code.

Sources: Riedmiller & Braun, "A direct adaptive method for faster backpropagation
learning: the RPROP algorithm", ICNN 1993 (Rprop+); Igel & Hüsken, "Improving the Rprop
learning algorithm", NC 2000, and "Empirical evaluation of the improved Rprop learning
algorithms", Neurocomputing 50, 2003 (Rprop-, iRprop-, iRprop+).

Notation: g the gradient, g' the previous one (only its sign is stored), Δ the step size, Δw
the last weight change, E the loss. A rule returns the new (Δ, sign g') and, for the "+"
variants, where it backtracks and by how much; other weights move by u = sign(g')·Δ = -Δw.
Δw_{t-1} is not stored: undos happen only where g' != 0, and a step leaving g' != 0 moved by
exactly -sign(g')·Δ_{t-1}, under any variant and hyperparameters. Signs are in ``store``'s
form (:class:`gradtx._rprop._storage.Storage`). A new variant: a rule, a :data:`VARIANTS` row.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax.numpy as jnp


class Hyper(NamedTuple):
    """η-, η+, Δmin, Δmax: numbers, or arrays under ``inject_hyperparams``."""

    eta_minus: Any
    eta_plus: Any
    min_step_size: Any
    max_step_size: Any


def adapt(step, same, flip, hp: Hyper):
    """Δ·η+ where g·g' > 0, Δ·η- where g·g' < 0, else Δ; clipped into [Δmin, Δmax] as torch."""
    up, down = (jnp.asarray(eta, step.dtype) for eta in (hp.eta_plus, hp.eta_minus))
    step = jnp.where(same, step * up, jnp.where(flip, step * down, step))
    low, high = (jnp.asarray(b).astype(step.dtype) for b in hp[2:])
    return jnp.clip(step, low, high)


def irprop_minus(g, step, prev, hp, store):
    """iRprop- (Igel & Hüsken 2000; torch.optim.Rprop)::

    if g·g' > 0:  Δ = min(Δ·η+, Δmax)
    elif g·g' < 0:  Δ = max(Δ·η-, Δmin);  g = 0
    w = w - sign(g)·Δ;  g' = g
    """
    s = store.sign(g)
    same, flip = store.agreement(s, prev)
    return adapt(step, same, flip, hp), store.unless(s, flip), None


def rprop_minus(g, step, prev, hp, store):
    """Rprop- (Igel & Hüsken 2000)::

    if g·g' > 0:  Δ = min(Δ·η+, Δmax)
    elif g·g' < 0:  Δ = max(Δ·η-, Δmin)
    w = w - sign(g)·Δ;  g' = g
    """
    s = store.sign(g)
    return adapt(step, *store.agreement(s, prev), hp), s, None


def rprop_plus(g, step, prev, hp, store, worse=True):
    """Rprop+ (Riedmiller & Braun 1993); iRprop+ (Igel & Hüsken 2000) with ``worse`` =
    E_t > E_{t-1}, the loss rose (E_{-1} = +inf; a NaN loss is never worse)::

        if g·g' > 0:   Δ = min(Δ·η+, Δmax);  Δw = -sign(g)·Δ;  w = w + Δw;  g' = g
        elif g·g' < 0: Δ = max(Δ·η-, Δmin);  if worse: w = w - Δw;  g' = 0
        else:          Δw = -sign(g)·Δ;  w = w + Δw;  g' = g

    Where g·g' < 0 the update is the undo u_t = -u_{t-1} = -sign(g')·Δ_{t-1} if ``worse``, else 0.
    """
    s = store.sign(g)
    same, flip = store.agreement(s, prev)
    undo = jnp.where(worse, -store.times(prev, step), jnp.zeros((), step.dtype))
    return adapt(step, same, flip, hp), store.unless(s, flip), (flip, undo)


def irprop_plus(g, step, prev, hp, store, *, worse):
    """iRprop+ (Igel & Hüsken 2000): :func:`rprop_plus`, undoing only where the loss rose."""
    return rprop_plus(g, step, prev, hp, store, worse)


class Variant(NamedTuple):
    """A :data:`VARIANTS` row: the rule, whether it backtracks and reads the loss (``value=``)."""

    rule: Callable[..., tuple]
    backtracks: bool = False
    needs_loss: bool = False


RpropVariant = Literal["irprop-", "rprop-", "rprop+", "irprop+"]
VARIANTS: dict[str, Variant] = {
    "irprop-": Variant(irprop_minus),
    "rprop-": Variant(rprop_minus),
    "rprop+": Variant(rprop_plus, backtracks=True),
    "irprop+": Variant(irprop_plus, backtracks=True, needs_loss=True),
}
RPROP_VARIANTS: tuple[RpropVariant, ...] = typing.get_args(RpropVariant)
"""The names ``variant=`` accepts, the default (torch's rule) first."""
assert RPROP_VARIANTS == tuple(VARIANTS)
