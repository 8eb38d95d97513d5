"""Rprop's state layouts: which one a transform gets, and its rules run on each.

The rules (:mod:`gradtx._rprop`) take and return step sizes and sign masks; a layout
stores them, and wraps a rule so that it reads and writes its own state arrays:

* **thirds** (the "-" variants): one integer per weight holding Δ and sign(g')
  (:mod:`gradtx._packing`), wherever ``max_step_size`` is a number in the packed range;
* **quarters** (the "+" variants): one integer holding Δ (scaled by a power of two),
  sign(g') and a step-size decrease deferred to the next step
  (:class:`gradtx._packing.Quarters`), wherever the
  bounds and η- are numbers, the bounds fit, and the state's scalars read them back
  exactly; the state holds η- and Δmin for the accessors;
* **unpacked**, otherwise (e.g. the bounds as arrays under ``inject_hyperparams``):
  step sizes, and signs as ``int8``.

The thirds and the quarters read each step's move back from the new code, so that in
a donated step XLA writes the state in place: the update reads only the new state (and,
for the quarters' undo, the gradient), never the old state the new one overwrites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _packing as packing
from gradtx import _validation as check
from gradtx._leafwise import Scalars
from gradtx._numerics import Signs
from gradtx._rprop_state import (
    ScaleByIRpropPlusPackedState,
    ScaleByIRpropPlusState,
    ScaleByRpropPackedState,
    ScaleByRpropPlusPackedState,
    ScaleByRpropState,
    value_dtype,
)


class Layout(NamedTuple):
    """How one transform stores its state: ``init(step)`` gives one leaf's state arrays
    from its initial step sizes, ``wrap(rule)`` runs a rule on them, ``state`` is the
    state type and ``scalars`` its constant scalar fields (or ``None``); ``defers``: the
    rule to wrap is Rprop+ with its decrease deferred."""

    init: Callable[[jax.Array], tuple]
    wrap: Callable[[Callable], Callable]
    state: type
    scalars: Scalars | None = None
    defers: bool = False


def choose(variant: str, eta_minus, min_step_size, max_step_size) -> Layout:
    """The layout of ``variant`` with these hyperparameters (see the module docstring)."""
    irprop_plus = variant == "irprop+"
    if variant in ("rprop+", "irprop+"):
        if _quarters_fit(eta_minus, min_step_size, max_step_size):
            return Layout(
                init=lambda step: _init_quarters(step, eta_minus, min_step_size, max_step_size),
                wrap=lambda rule: _on_quarters(rule, min_step_size, max_step_size),
                state=ScaleByIRpropPlusPackedState if irprop_plus else ScaleByRpropPlusPackedState,
                scalars=constants(eta_minus=eta_minus, min_step_size=min_step_size),
                defers=True,
            )
    elif _thirds_fit(max_step_size):
        return Layout(
            init=lambda step: _init_thirds(step, max_step_size),
            wrap=_on_thirds,
            state=ScaleByRpropPackedState,
        )
    return Layout(
        init=lambda step: (step, jnp.zeros(step.shape, jnp.int8)),
        wrap=_unpacked,
        state=ScaleByIRpropPlusState if irprop_plus else ScaleByRpropState,
    )


def constants(**values) -> Scalars:
    """Scalar state fields that never change: hyperparameters kept in the state so that
    the accessors can read it alone (in :func:`gradtx._rprop_state.value_dtype`)."""

    def init():
        return {k: jnp.asarray(v, value_dtype()) for k, v in values.items()}

    return Scalars(tuple(values), init, lambda held: ({}, held))


def _is_number(value) -> bool:
    """A number known when the transform is built (not an array that may be traced)."""
    return check.is_python_number(value) or isinstance(value, np.generic)


def _packable(dtype) -> None:
    if not packing.is_packable(dtype):
        raise ValueError(
            f"Rprop's step sizes must be floats; got {dtype} (params or accumulator_dtype)."
        )


# --------------------------------------------------------------------------------------
# Thirds: the "-" variants
# --------------------------------------------------------------------------------------


def _thirds_fit(max_step_size) -> bool:
    """The clip keeps every step size below ``max_step_size``, which must therefore be
    known when the transform is built and fit float32 and bfloat16. float16 step sizes
    (85.25 at most) are checked at ``init``."""
    if not _is_number(max_step_size):
        return False
    return all(packing.fits(float(max_step_size), d) for d in (jnp.float32, jnp.bfloat16))


def _init_thirds(step, max_step_size) -> tuple:
    _packable(step.dtype)
    if not packing.fits(max_step_size, step.dtype):
        raise ValueError(
            f"Invalid max_step_size: {max_step_size!r} (must be <= "
            f"{packing.packed_limit(step.dtype):.4g} for {step.dtype} step sizes, which are "
            f"packed with their signs; or pass accumulator_dtype=jnp.float32)."
        )
    return (packing.encode_int8(step, jnp.zeros(step.shape, jnp.int8)),)


def _on_thirds(rule):
    """The "-" variants' rule on the thirds: unpack (Δ, sign g' as an offset), apply the
    rule, pack, and read the move u = sign(g'_t)·Δ_t back from the new code: the update
    then reads only the new state, so that XLA can write the state in place in a donated
    step without first copying the old one."""

    def thirds_rule(g, code):
        k = packing.Offsets.like(code)
        step, prev = packing.unpack_offsets(code, k)
        (step, s), _ = rule(g, step, prev)
        code = packing.encode_offsets(step, s)
        return packing.signed_step(code, k), (code,)  # the bits of sign(g')·Δ

    return thirds_rule


# --------------------------------------------------------------------------------------
# Quarters: the "+" variants
# --------------------------------------------------------------------------------------


def _quarters_fit(eta_minus, min_step_size, max_step_size) -> bool:
    """The bounds and η- known when the transform is built, every step size in the
    bounds packing in float32 and bfloat16 (float16 and float64 are checked at
    ``init``), and η- and Δmin read back exactly from the state (:func:`_exact`)."""
    if not all(_is_number(v) for v in (eta_minus, min_step_size, max_step_size)):
        return False
    return all(
        _quarters_fit_dtype(eta_minus, min_step_size, max_step_size, d)
        for d in (jnp.float32, jnp.bfloat16)
    )


def _quarters_fit_dtype(eta_minus, min_step_size, max_step_size, dtype) -> bool:
    return (
        packing.Quarters.fits(min_step_size, max_step_size, dtype)
        and _exact(eta_minus, dtype)
        and _exact(min_step_size, dtype)
    )


def _exact(value, dtype) -> bool:
    """Whether ``value`` held in the value dtype and then cast to ``dtype`` (as the
    accessors read it) is ``value`` cast to ``dtype`` (as the rule uses it)."""
    return bool(np.asarray(np.asarray(value, value_dtype()), dtype) == np.asarray(value, dtype))


def _init_quarters(step, eta_minus, min_step_size, max_step_size) -> tuple:
    _packable(step.dtype)
    q = packing.Quarters.of(min_step_size, step.dtype)
    if not _quarters_fit_dtype(eta_minus, min_step_size, max_step_size, step.dtype):
        raise ValueError(
            f"Invalid min_step_size, max_step_size: {min_step_size!r}, {max_step_size!r} "
            f"(with this min_step_size the '+' variants pack {step.dtype} step sizes only "
            f"below {q.bounds(step.dtype)[1]:.4g}: about 127 binades above a normal "
            "min_step_size in float32 and bfloat16, 15 in float16; and eta_minus and "
            "min_step_size must be exact in float32; pass accumulator_dtype=jnp.float32, or "
            "narrower bounds)."
        )
    none = jnp.zeros(step.shape, bool)
    return (q.encode_masks(step, none, none, none),)


def _on_quarters(rule, min_step_size, max_step_size):
    """Rprop+ with its decrease deferred (:mod:`gradtx._rprop`) on the quarters: unpack
    (Δ·2^-k, sign g' as top bits, pending), apply the rule to the scaled step sizes
    within the bounds scaled alike (exact: :class:`gradtx._packing.Quarters`), pack,
    and read the move back from the new code and the gradient.

    The move is sign(g'_t)·Δ_t where no sign flipped (as for the "-" variants; there
    sign g'_t = sign g_t), and where one flipped (``pending`` in the new code) the undo
    -u_{t-1} = -sign(g'_{t-1})·Δ_{t-1} = sign(g_t)·Δ_{t-1} if ``worse``, else 0: the new
    code holds that Δ_{t-1}. Either way sign(g_t) times the Δ the new code holds
    (:meth:`gradtx._packing.Quarters.move`)."""

    def quarters_rule(g, code, *, worse=True):
        dtype = packing.step_dtype(code)
        q = packing.Quarters.of(min_step_size, dtype)
        bounds = q.scaled_bounds(min_step_size, max_step_size, dtype)
        prev = q.signs(code)
        step, s, flip = rule(g, q.scaled_step(code), prev, prev.pending(), bounds=bounds)
        code = q.encode(step, s.marked(flip).top)  # where the sign flipped: g' = 0, pending
        # the update reads Δ and the state back from the new code (not step and flip):
        # reading the old one would make XLA copy it before writing the new one in place
        return q.move(code, g, worse), (code,)

    return quarters_rule


# --------------------------------------------------------------------------------------
# Unpacked
# --------------------------------------------------------------------------------------


def _unpacked(rule):
    """``rule`` on the unpacked state: step sizes, and signs as ``int8``. The move is
    sign(g'_t)·Δ_t, or the "+" variants' backtracking step where they take it."""

    def unpacked_rule(g, step, prev_sign, **kw):
        (step, s), backtrack = rule(g, step, Signs.of_int8(prev_sign), **kw)
        u = s.times(step)
        if backtrack is not None:
            where, undo = backtrack
            u = jnp.where(where, undo, u)
        return u, (step, s.as_int8())

    return unpacked_rule
