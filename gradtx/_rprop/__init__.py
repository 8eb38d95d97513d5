r"""Rprop, resilient backpropagation: a per-weight step size adapted by gradient signs.

``_rules`` holds the four published rules and the table of variants, ``_storage`` how
(Δ, sign g') is stored (one :class:`~gradtx._rprop._storage.Storage` interface), and
``_state`` the state types and accessors. :func:`scale_by_rprop` picks the store and
hands the rule to the per-leaf engine.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import Scalars, leafwise
from gradtx._rprop._rules import RPROP_VARIANTS, VARIANTS, Hyper, RpropVariant
from gradtx._rprop._state import HELD, STATE_TYPES, value_dtype
from gradtx._rprop._storage import Deferred, Packed, Plain, fits, is_packable, packed_limit
from gradtx._trees import StateMismatchError, check_state

__all__ = ["RPROP_VARIANTS", "RpropVariant", "scale_by_rprop"]


def _number(x: Any) -> bool:
    return check.is_python_number(x) or isinstance(x, np.generic)


def _choose(backtracks: bool, hp: Hyper) -> type:
    """The store: packed where ``max_step_size`` is a number known now that packs in
    float32 and bfloat16 (float16, with its 85.25, is checked at ``init``); for the
    variants that backtrack, where η-, Δmin and Δmax are numbers too, which the state
    holds exactly (in :func:`value_dtype`, then cast as the rule casts them); else plain."""
    high = hp.max_step_size
    if not (_number(high) and all(fits(float(high), d) for d in (jnp.float32, jnp.bfloat16))):
        return Plain
    if not backtracks:
        return Packed
    held = (hp.eta_minus, hp.min_step_size, high)
    dtypes = (jnp.float16, jnp.bfloat16, jnp.float32)
    exact = all(
        _number(v) and np.asarray(np.asarray(v, value_dtype()), d) == np.asarray(v, d)
        for v in held
        for d in dtypes
    )
    return Deferred if exact else Plain


def _check_step_dtype(dtype: Any, hp: Hyper, packed: bool) -> None:
    """At ``init``, once the step sizes' dtype is known: it packs, ``max_step_size`` fits
    it, and a positive ``min_step_size`` does not round to 0 in it (the step sizes would
    decay to 0 and freeze their weights)."""
    if not is_packable(dtype):
        raise TypeError(
            f"Rprop's step sizes must be floats; got {dtype} (params or accumulator_dtype)."
        )
    fix = "or pass accumulator_dtype=jnp.float32"
    if packed and not fits(hp.max_step_size, dtype):
        raise ValueError(
            f"Invalid max_step_size: {hp.max_step_size!r} (must be <= {packed_limit(dtype):.4g} "
            f"for {dtype} step sizes, which are packed with their signs; {fix})."
        )
    low = check.concrete(hp.min_step_size)
    if low is not None and low > 0 and float(np.asarray(low, dtype)) == 0:
        tiny = float(jnp.finfo(dtype).smallest_subnormal)
        raise ValueError(
            f"Invalid min_step_size: {low!r} rounds to 0 in {dtype} step sizes, which would "
            f"decay to 0 and freeze their weights (must be >= {tiny:.3g} for {dtype}, or 0 "
            f"to allow that; {fix})."
        )


def _scalars(needs_loss: bool, held: tuple | None) -> Scalars | None:
    """The scalar state: iRprop+'s E_{t-1} (+inf before the first update; each update
    reads E_t, ``value=``, and hands every weight ``worse`` = E_t > E_{t-1}), and the
    :class:`Deferred` store's η-, Δmin, Δmax (each update hands the leaves those of the
    step before, and keeps its own)."""
    fields = (("prev_value",) if needs_loss else ()) + (HELD if held else ())
    now = dict(zip(HELD, held or ()))

    def init():
        first = {"prev_value": jnp.inf} if needs_loss else {}
        return {k: jnp.asarray(v, value_dtype()) for k, v in {**first, **now}.items()}

    def step(values, **extra):
        kw = {"held": tuple(values[k] for k in HELD)} if held else {}
        new = {k: jnp.asarray(v, value_dtype()) for k, v in now.items()}
        if needs_loss:
            value = jnp.asarray(extra["value"])
            if value.shape != ():
                raise ValueError(f"value must be a scalar loss, got shape {value.shape}.")
            kw["worse"] = value > values["prev_value"]
            new["prev_value"] = value.astype(values["prev_value"].dtype)
        return kw, new

    return Scalars(fields, init, step) if fields else None


def _guarded(tx: GradientTransformation, state_type: type, variant: str) -> GradientTransformation:
    """``tx`` refusing another transform's state by name (integer gradients are the
    engine's to refuse, by path)."""

    def update(updates, state, params=None, **extra):
        try:
            check_state(state, state_type, f"scale_by_rprop(variant={variant!r})")
        except StateMismatchError as e:
            raise StateMismatchError(
                f"{e} (Rprop states carry over between variants and hyperparameters where "
                "the type matches; iRprop+'s also keeps the loss, and under "
                "inject_hyperparams the step sizes are kept unpacked.)"
            ) from None
        return tx.update(updates, state, params, **extra)

    return GradientTransformation(tx.init, update)


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    variant: RpropVariant = "irprop-",
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Rprop's sign rule, returning :math:`u_t = -\Delta w_t` (uphill, like a gradient).

    :math:`\Delta_0` = ``learning_rate`` (a schedule's value at step 0, as under
    :func:`gradtx.inject_hyperparams`: Rprop reads it only once); each product
    :math:`g_t g'_{t-1}` is judged by its sign. All variants adapt the step size alike,
    clipped into the bounds at every step (the first included, as torch does)::

        Δ_t = clip(Δ_{t-1}·(η+ if g_t·g'_{t-1} > 0, η- if < 0, else 1), Δmin, Δmax)

    ``variant`` picks what happens next (the rules with their papers' pseudo-code:
    ``gradtx/_rprop/_rules.py``):

    * ``"irprop-"`` (default; Igel & Hüsken 2000; ``torch.optim.Rprop``): where
      g_t·g'_{t-1} < 0 set g_t = 0; u_t = sign(g_t)·Δ_t; g'_t = g_t.
    * ``"rprop-"`` (Igel & Hüsken 2000): u_t = sign(g_t)·Δ_t always; g'_t = g_t.
    * ``"rprop+"`` (Riedmiller & Braun 1993, weight-backtracking): where g_t·g'_{t-1} >= 0,
      u_t = sign(g_t)·Δ_t and g'_t = g_t; where g_t·g'_{t-1} < 0, undo the previous move,
      u_t = -u_{t-1}, and g'_t = 0.
    * ``"irprop+"`` (Igel & Hüsken 2000): as ``"rprop+"``, but the previous move is undone
      only if the loss went up, E_t > E_{t-1} (else u_t = 0 there), with E_{-1} = +inf.
      The loss E_t (at the params the gradients were taken at) must be passed as
      ``update(grads, state, params, value=loss)``; ``chain`` passes it on. Without it
      ``update`` raises ``TypeError``. A NaN loss is never "worse".

    Chain it with ``scale(-1.0)`` to descend (as :func:`gradtx.rprop` does); the "+"
    variants undo the previous *output of this block*, which is the previous weight change
    when the blocks after it are fixed and linear.

    **State.** Per weight, Δ (in ``accumulator_dtype``, default the param's dtype) and
    the *sign* of g', packed into one unsigned integer: 4 bytes per float32 weight (torch
    and optax keep 8; 2 per float16/bfloat16, 8 per float64). Read it with
    :func:`gradtx.rprop_step_sizes` and :func:`gradtx.rprop_prev_signs`. The "+" variants
    need no stored Δw: they undo only where g'_{t-1} != 0, and there u_{t-1} =
    sign(g'_{t-1})·Δ_{t-1} exactly. Where they undo, they keep Δ_{t-1} marked (a
    ``uint8`` per weight: 5 bytes per float32 weight) and the next read applies its
    decrease with the η-, Δmin, Δmax kept in the state as scalars: their update then
    reads only the new state, which XLA overwrites in place in a donated step. iRprop+
    also keeps E_{t-1}. So a state means the same whichever hyperparameters read it
    next: continued, restored or injected under other valid ones (or by another "-"
    variant), it steps as the papers' rules would; a state of another type is refused.
    Packing needs ``max_step_size`` at most about 1.47e13 (float16 step sizes: 85.25,
    checked at ``init``; ``accumulator_dtype=jnp.float32`` lifts it); beyond that, or
    with the bounds (for the "+" variants also η-) given as arrays
    (``inject_hyperparams``), step sizes and signs are kept apart
    (:class:`ScaleByRpropState`, 5 bytes per float32 weight, computed at once; in a
    donated step XLA then copies the "+" variants' state first). ``init`` refuses a
    positive ``min_step_size`` that rounds to 0 in the step sizes' dtype (e.g. 1e-8 in
    float16): the step sizes would decay to 0 and freeze.

    **Where it can differ from torch.** torch multiplies g_t·g'_{t-1} and takes the sign of
    the product; where two tiny gradients' product underflows to 0 (float32: below
    7e-46, e.g. both near 1e-23) torch reads "no information", while gradtx reads the
    signs, the paper's rule. Signs are read from the bits, so subnormal gradients have the
    sign torch gives them even under XLA's flush-to-zero on CPU. ``sign(NaN) = 0``
    (torch's convention): a NaN gradient leaves its weight and step size unchanged.

    Same arguments and defaults as ``optax.scale_by_rprop``, which (0.2.8) differs: it
    returns each step's update one step late (its first update is zero), and it does not
    clip Δ when g_t·g'_{t-1} = 0, so a ``learning_rate`` outside the bounds is used as is
    on the first step. optax and torch offer only iRprop-.

    Args:
      learning_rate: Δ_0, the initial step size (``>= 0``), clipped into the bounds.
      eta_minus: η-, the factor after a sign change (in ``(0, 1)``).
      eta_plus: η+, the factor while the sign holds (``> 1``).
      min_step_size: Δmin (``>= 0``).
      max_step_size: Δmax (``>= min_step_size``).
      variant: ``"irprop-"`` (torch's, the default), ``"rprop-"``, ``"rprop+"`` or
        ``"irprop+"`` (which needs ``value=loss`` at each update).
      accumulator_dtype: the dtype of the step sizes (optax's name in ``trace``), ``None``
        for the param's; e.g. ``jnp.float32`` for bfloat16 params.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose update is u_t = -Δw_t.

    Example:
      Three steps of iRprop-: the step size grows while a sign holds, shrinks (and the
      weight waits) where it flips, and stays where the gradient is zero:

      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale_by_rprop(learning_rate=0.1)
      >>> state = tx.init({"w": jnp.zeros(3)})
      >>> for g in ([1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, 0.0]):
      ...     updates, state = tx.update({"w": jnp.array(g)}, state)
      ...     print([round(float(u), 4) for u in updates["w"]])
      [0.1, 0.1, -0.1]
      [0.12, 0.0, -0.12]
      [0.144, 0.05, 0.0]
    """
    if callable(learning_rate):  # a schedule: its value at step 0 seeds Δ_0 (and only that)
        learning_rate = learning_rate(jnp.zeros([], jnp.int32))
    check.non_negative("learning_rate", learning_rate)
    check.rprop_etas(("eta_minus", "eta_plus"), eta_minus, eta_plus)
    check.step_size_bounds(("min_step_size", "max_step_size"), min_step_size, max_step_size)
    check.one_of("variant", variant, RPROP_VARIANTS)
    check.float_dtype("accumulator_dtype", accumulator_dtype)
    if check.concrete(min_step_size) is not None:
        min_step_size = abs(min_step_size)  # -0.0 -> 0.0: step sizes stay non-negative
    hp = Hyper(eta_minus, eta_plus, min_step_size, max_step_size)
    rule, backtracks, needs_loss = VARIANTS[variant]
    store = _choose(backtracks, hp)
    packed = store is not Plain
    state_type = STATE_TYPES[store, needs_loss]

    def init_leaf(p):
        dtype = jnp.dtype(accumulator_dtype or p.dtype)
        _check_step_dtype(dtype, hp, packed)
        # Δ0 = learning_rate clipped into the bounds (the first update clips it anyway),
        # in the step sizes' dtype even where the bounds are arrays of a wider one
        step = jnp.clip(jnp.full(p.shape, learning_rate, dtype), min_step_size, max_step_size)
        step = jnp.abs(step).astype(dtype)
        s = store.like(step)
        return s.write(step, s.of_int8(jnp.zeros(step.shape, jnp.int8)))

    def update_leaf(g, *state, held=None, **worse):
        s = store.like(state[0], held)
        before, prev = s.read(*state)
        step, sign, backtrack = rule(g, before, prev, hp, s, **worse)
        return s.commit(before, step, sign, backtrack, g, worse.get("worse", True))

    tx = leafwise(
        update_leaf,
        state=state_type,
        init_leaf=init_leaf,
        scalars=_scalars(needs_loss, (eta_minus, *hp[2:]) if store is Deferred else None),
        extra_args=("value",) if needs_loss else (),
    )
    return _guarded(tx, state_type, variant)
