r"""The four published Rprop rules, per weight, each beside its pseudo-code.

Sources: Riedmiller & Braun, "A direct adaptive method for faster backpropagation
learning: the RPROP algorithm", ICNN 1993 (Rprop+); Igel & Hüsken, "Improving the Rprop
learning algorithm", NC 2000, and "Empirical evaluation of the improved Rprop learning
algorithms", Neurocomputing 50, 2003 (Rprop-, iRprop-, iRprop+).

Notation: g the gradient, g' the stored previous gradient (read only through its sign),
Δ the step size, Δw the last weight change, E the loss. A rule returns the new
(Δ, sign g') and, for the "+" variants, where it backtracks and by how much; every other
weight moves by u = sign(g')·Δ = -Δw. The "+" variants undo Δw_{t-1} without storing
it: they undo only where g' != 0, and every step that leaves g' != 0 moved by exactly
-sign(g')·Δ_{t-1}; so the state means the same under any variant and hyperparameters.

``store`` is the leaf's :class:`gradtx._rprop._storage.Storage`, which holds the signs
in its own form: the rules hold no bits. A new variant is one rule and one row of
:data:`VARIANTS`.
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
    """Δ = min(Δ·η+, Δmax) where g·g' > 0; max(Δ·η-, Δmin) where g·g' < 0; Δ otherwise;
    clipped into [Δmin, Δmax] in every case, as torch does (which only matters on the
    first step, when ``learning_rate`` lies outside the bounds)."""
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
    """Rprop+ (Riedmiller & Braun 1993); iRprop+ where ``worse`` is E_t > E_{t-1}::

        if g·g' > 0:   Δ = min(Δ·η+, Δmax);  Δw = -sign(g)·Δ;  w = w + Δw;  g' = g
        elif g·g' < 0: Δ = max(Δ·η-, Δmin);  if worse: w = w - Δw;  g' = 0
        else:          Δw = -sign(g)·Δ;  w = w + Δw;  g' = g

    Where g·g' < 0 the update undoes the last move if ``worse``, u_t = -u_{t-1} =
    -sign(g')·Δ_{t-1}, and is 0 otherwise.
    """
    s = store.sign(g)
    same, flip = store.agreement(s, prev)
    undo = jnp.where(worse, -store.times(prev, step), jnp.zeros((), step.dtype))
    return adapt(step, same, flip, hp), store.unless(s, flip), (flip, undo)


def irprop_plus(g, step, prev, hp, store, *, worse):
    """iRprop+ (Igel & Hüsken 2000): Rprop+ undoing only where the loss rose,
    ``worse`` = E_t > E_{t-1} (E_{-1} = +inf; a NaN loss is never worse)."""
    return rprop_plus(g, step, prev, hp, store, worse)


class Variant(NamedTuple):
    """A row of :data:`VARIANTS`: the rule, whether it backtracks (its state then keeps
    the step size its undo moves by, :class:`gradtx._rprop._storage.Deferred`) and
    whether it reads the loss (``value=``)."""

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
