r"""Rprop, a per-weight step size adapted by gradient signs: the transform, the store's
choice and checks (``_rules``: the rules; ``_storage``: (Δ, sign g')'s forms; ``_state``)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import Scalars, leafwise
from gradtx._rprop._rules import RPROP_VARIANTS, VARIANTS, Hyper, RpropVariant
from gradtx._rprop._state import HELD, STATE_TYPES, stored, value_dtype
from gradtx._rprop._storage import Deferred, Packed, Plain, fits, is_packable, packed_limit
from gradtx._trees import StateMismatchError, check_state

__all__ = ["RPROP_VARIANTS", "RpropVariant", "scale_by_rprop"]


def _number(x: Any) -> bool:
    return check.is_python_number(x) or isinstance(x, np.generic)


def _choose(backtracks: bool, hp: Hyper) -> type:
    """Packed if ``max_step_size`` is a number packing in float32 and bfloat16 (float16:
    at ``init``); Deferred if η-, Δmin, Δmax are also held exactly (:func:`value_dtype`)."""
    high = hp.max_step_size
    if not (_number(high) and all(fits(float(high), d) for d in (jnp.float32, jnp.bfloat16))):
        return Plain
    if not backtracks:
        return Packed
    exact = all(
        _number(v) and np.asarray(np.asarray(v, value_dtype()), d) == np.asarray(v, d)
        for v in (hp.eta_minus, hp.min_step_size, high)
        for d in (jnp.float16, jnp.bfloat16, jnp.float32)
    )
    return Deferred if exact else Plain


def _check_step_dtype(dtype: Any, hp: Hyper, packed: bool) -> None:
    """At ``init``: the dtype packs, fits ``max_step_size``, and a positive Δmin stays > 0."""
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
    """iRprop+'s E_{t-1} (leaves get ``worse`` = E_t > E_{t-1}) and Deferred's η-, Δmin,
    Δmax (leaves get the last step's; it keeps this one's)."""
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
    """``tx`` refusing another transform's state, naming the variant."""

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

    From :math:`\Delta_0` = ``learning_rate`` (a schedule's value at step 0), every variant
    adapts the step size alike, clipped into the bounds at every step as torch does::

        Δ_t = clip(Δ_{t-1}·(η+ if g_t·g'_{t-1} > 0, η- if < 0, else 1), Δmin, Δmax)

    then ``variant`` picks the move (pseudo-code: ``gradtx/_rprop/_rules.py``):

    * ``"irprop-"`` (default; Igel & Hüsken 2000; ``torch.optim.Rprop``, bit for bit):
      where g_t·g'_{t-1} < 0 set g_t = 0; u_t = sign(g_t)·Δ_t; g'_t = g_t.
    * ``"rprop-"`` (Igel & Hüsken 2000): u_t = sign(g_t)·Δ_t always; g'_t = g_t.
    * ``"rprop+"`` (Riedmiller & Braun 1993): as ``"rprop-"``, but where g_t·g'_{t-1} < 0
      undo the previous move, u_t = -u_{t-1}, and set g'_t = 0.
    * ``"irprop+"`` (Igel & Hüsken 2000): as ``"rprop+"``, undoing only where the loss
      rose, E_t > E_{t-1} (else u_t = 0 there; E_{-1} = +inf, a NaN loss is never worse).

    Chain it with ``scale(-1.0)`` to descend (as :func:`gradtx.rprop` does). Same
    arguments and defaults as ``optax.scale_by_rprop``, which (0.2.8) returns each update
    one step late (its first is zero) and leaves Δ_0 unclipped.

    **State** (:class:`ScaleByRpropPackedState` and the others): Δ and sign g' packed in
    4 bytes per float32 weight (5 for the "+" variants; torch and optax keep 8), meaning the
    same under any hyperparameters (another type is refused); read by
    :func:`gradtx.rprop_step_sizes`, :func:`gradtx.rprop_prev_signs`. Layout, limits, and
    where it can differ from torch (products underflowing to 0): the guide page "Rprop variants".

    Args:
      learning_rate: Δ_0, the initial step size (``>= 0``), clipped into the bounds.
      eta_minus: η-, the factor after a sign change (in ``(0, 1)``).
      eta_plus: η+, the factor while the sign holds (``> 1``).
      min_step_size: Δmin (``>= 0``; not one that rounds to 0 in the step sizes' dtype).
      max_step_size: Δmax (``>= min_step_size``).
      variant: one of :data:`RPROP_VARIANTS`, above; ``"irprop+"`` needs
        ``update(grads, state, params, value=loss)`` (``chain`` passes it on).
      accumulator_dtype: the step sizes' dtype (``None``: the param's; e.g. ``jnp.float32``).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose update is u_t = -Δw_t.

    Example:
      iRprop-: Δ grows while a sign holds, shrinks (the weight waits) where it flips:

      >>> import jax.numpy as jnp, gradtx
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
    state_type = STATE_TYPES[store, needs_loss]

    def init_leaf(p):
        dtype = jnp.dtype(accumulator_dtype or p.dtype)
        _check_step_dtype(dtype, hp, packed=store is not Plain)
        # Δ0 clipped (the first update would clip it), in the step sizes' dtype
        step = jnp.clip(jnp.full(p.shape, learning_rate, dtype), min_step_size, max_step_size)
        return stored(store, jnp.abs(step).astype(dtype), jnp.zeros(p.shape, jnp.int8))

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
