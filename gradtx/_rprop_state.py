"""Rprop's state: its layouts, and accessors that read any of them as floats and signs.

The default layout packs each weight's step size and previous sign into one unsigned
integer (:mod:`gradtx._packing`): 4 bytes per float32 weight. The "+" variants' packed
codes also mark a step-size decrease deferred to the next step, and their state holds
η- and Δmin so that the accessors can apply it. Where the bounds arrive as arrays
(``inject_hyperparams``), the packed range cannot be checked when the transform is
built, and the state keeps step sizes and signs apart.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _packing as packing
from gradtx._numerics import Signs


def value_dtype() -> Any:
    """The dtype of the state's scalars (iRprop+'s E_{t-1}, the "+" variants' η- and
    Δmin): float64 when x64 is enabled, else float32, so that a loss is compared without
    rounding."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class ScaleByRpropState(NamedTuple):
    r"""Rprop's unpacked state (``max_step_size`` given as an array): 5 B per float32 weight.

    Attributes:
      step_sizes: :math:`\Delta` per weight, in the step-size dtype, like the params.
      prev_signs: the sign of the previous (possibly zeroed) gradient :math:`g'`, ``int8``.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> inject = gradtx.inject_hyperparams(gradtx.scale_by_rprop)
      >>> tx = inject(learning_rate=0.01, max_step_size=50.0)
      >>> type(tx.init({"w": jnp.zeros(2)}).inner_state).__name__
      'ScaleByRpropState'
    """

    step_sizes: Any  # Δ, per weight, in the step-size dtype; mirrors params
    prev_signs: Any  # sign of the previous (possibly zeroed) gradient g', int8; mirrors params


class ScaleByIRpropPlusState(NamedTuple):
    r"""iRprop+'s unpacked state: Rprop's, plus the previous loss :math:`E_{t-1}`.

    Attributes:
      step_sizes: :math:`\Delta` per weight, like the params.
      prev_signs: the sign of :math:`g'`, ``int8``, like the params.
      prev_value: :math:`E_{t-1}`, a scalar, ``+inf`` before the first update.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.scale_by_rprop, static_args="variant")(
      ...     learning_rate=0.01, max_step_size=50.0, variant="irprop+")
      >>> type(tx.init({"w": jnp.zeros(2)}).inner_state).__name__
      'ScaleByIRpropPlusState'
    """

    step_sizes: Any
    prev_signs: Any
    prev_value: jax.Array  # E_{t-1}: a scalar, +inf before the first update


class ScaleByRpropPackedState(NamedTuple):
    r"""Rprop's state: step size and previous sign packed in one integer per weight.

    4 B per float32 weight. Read it with :func:`rprop_step_sizes` and
    :func:`rprop_prev_signs`.

    Attributes:
      packed: per weight, :math:`\Delta` and :math:`\operatorname{sign}(g')` in one unsigned
      integer (``uint32`` for float32 step sizes).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> state = gradtx.scale_by_rprop(0.01).init({"w": jnp.zeros(2)})
      >>> type(state).__name__, state.packed["w"].dtype
      ('ScaleByRpropPackedState', dtype('uint32'))
    """

    packed: Any  # uint32 (float32 steps), uint64, uint16 (float16), int16 (bfloat16)


class ScaleByRpropPlusPackedState(NamedTuple):
    r"""Rprop+'s state: step size, sign and a pending decrease packed in one integer per weight.

    4 B per float32 weight, and two scalars. Where the sign changed, Rprop+ keeps
    :math:`\Delta_{t-1}` (its undo moves by it) and applies the decrease at the next step;
    so that the state can be read alone, it holds :math:`\eta^-` and
    :math:`\Delta_{\min}`. Read it with
    :func:`rprop_step_sizes` (which applies a pending decrease) and
    :func:`rprop_prev_signs`.

    Attributes:
      packed: per weight, :math:`\Delta`, :math:`\operatorname{sign}(g')` and whether a
        decrease is pending, in one unsigned integer (``uint32`` for float32 step sizes).
      eta_minus: :math:`\eta^-`, a scalar.
      min_step_size: :math:`\Delta_{\min}`, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> state = gradtx.scale_by_rprop(0.01, variant="rprop+").init({"w": jnp.zeros(2)})
      >>> type(state).__name__, state.packed["w"].dtype, float(state.eta_minus)
      ('ScaleByRpropPlusPackedState', dtype('uint32'), 0.5)
    """

    packed: Any
    eta_minus: jax.Array
    min_step_size: jax.Array


class ScaleByIRpropPlusPackedState(NamedTuple):
    r"""iRprop+'s state: Rprop+'s packed state plus the previous loss :math:`E_{t-1}`.

    Attributes:
      packed: as in :class:`ScaleByRpropPlusPackedState`.
      prev_value: :math:`E_{t-1}`, a scalar, ``+inf`` before the first update.
      eta_minus: :math:`\eta^-`, a scalar.
      min_step_size: :math:`\Delta_{\min}`, a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> state = gradtx.scale_by_rprop(0.01, variant="irprop+").init({"w": jnp.zeros(2)})
      >>> type(state).__name__, float(state.prev_value)
      ('ScaleByIRpropPlusPackedState', inf)
    """

    packed: Any
    prev_value: jax.Array
    eta_minus: jax.Array
    min_step_size: jax.Array


RPROP_STATES = (
    ScaleByRpropState,
    ScaleByIRpropPlusState,
    ScaleByRpropPackedState,
    ScaleByRpropPlusPackedState,
    ScaleByIRpropPlusPackedState,
)


def find_rprop_state(state: Any) -> Any:
    """The one Rprop block state inside ``state`` (a block state, a chain's tuple, an
    ``inject_hyperparams`` state, ...)."""
    found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, RPROP_STATES))
    found = [s for s in found if isinstance(s, RPROP_STATES)]
    if len(found) != 1:
        raise ValueError(
            f"expected one Rprop state (from scale_by_rprop or rprop) inside the state, "
            f"found {len(found)}; pass that block's state."
        )
    return found[0]


def _quarters(block: Any, code: jax.Array) -> packing.Quarters:
    """The quarters of a "+" variant's code, from the Δmin its state holds."""
    return packing.Quarters.of(block.min_step_size, packing.step_dtype(code))


def _read_deferred(block: Any, code: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A "+" variant's step sizes, with a pending decrease applied as the next step
    applies it (max(Δ·η-, Δmin), in the step-size dtype), and signs as ``int8``."""
    step, pos, neg, pending = _quarters(block, code).unpack(code)
    dtype = step.dtype
    shrunk = jnp.maximum(step * block.eta_minus.astype(dtype), block.min_step_size.astype(dtype))
    return jnp.where(pending, shrunk, step), Signs(pos, neg).as_int8()


def _check_quarters_hold(step: jax.Array, q: packing.Quarters) -> None:
    """Raise ``ValueError`` where concrete step sizes lie outside the quarters' range:
    below min_step_size's binade (or negative, or NaN), or too far above it."""
    if isinstance(step, jax.core.Tracer) or isinstance(q.k, jax.core.Tracer):
        return
    if not q.holds(step):
        lowest, highest = q.bounds(step.dtype)
        raise ValueError(
            "Invalid step sizes for a '+' variant's packed state: with this min_step_size "
            f"every step size must lie in [{lowest:.4g}, {highest:.4g}); got values from "
            f"{np.min(np.asarray(step))!r} to {np.max(np.asarray(step))!r}."
        )


def _field(state: Any, which: int) -> Any:
    block = find_rprop_state(state)
    if hasattr(block, "eta_minus"):
        return jax.tree.map(lambda code: _read_deferred(block, code)[which], block.packed)
    if hasattr(block, "packed"):
        return jax.tree.map(lambda code: packing.decode(code)[which], block.packed)
    return block.step_sizes if which == 0 else block.prev_signs


def rprop_step_sizes(state: Any) -> Any:
    r"""The step sizes :math:`\Delta` of an Rprop state, as a float tree mirroring the params.

    The dtype is the step sizes' (``accumulator_dtype``, else the param's; complex params
    have real ones of shape ``(..., 2)``).

    Args:
      state: the state of :func:`gradtx.scale_by_rprop` or of anything holding one
        (:func:`gradtx.rprop`'s chain, :func:`gradtx.inject_hyperparams`, ...).

    Returns:
      A tree of float arrays like the params.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.rprop(learning_rate=0.01)
      >>> gradtx.rprop_step_sizes(tx.init({"w": jnp.zeros(2)}))["w"]
      Array([0.01, 0.01], dtype=float32)
    """
    return _field(state, 0)


def rprop_prev_signs(state: Any) -> Any:
    r"""The signs of the stored previous gradients :math:`g'` of an Rprop state.

    Args:
      state: the state of :func:`gradtx.scale_by_rprop` or of anything holding one.

    Returns:
      A tree of ``int8`` arrays (-1, 0 or +1; 0 where the last step zeroed :math:`g'`) like
      the params.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.rprop()
      >>> params = {"w": jnp.zeros(3)}
      >>> _, state = tx.update({"w": jnp.array([2.0, -1.0, 0.0])}, tx.init(params), params)
      >>> gradtx.rprop_prev_signs(state)["w"]
      Array([ 1, -1,  0], dtype=int8)
    """
    return _field(state, 1)


def with_values(block: Any, step_sizes: Any, prev_signs: Any) -> Any:
    """An Rprop block state of ``block``'s layout holding these step sizes and signs
    (the torch bridge's way in); the step sizes are cast to the block's dtype."""
    if not hasattr(block, "packed"):
        steps = jax.tree.map(lambda new, old: new.astype(old.dtype), step_sizes, block.step_sizes)
        return block._replace(step_sizes=steps, prev_signs=prev_signs)

    def pack(step, sign, code):
        step = jnp.asarray(step).astype(packing.step_dtype(code))
        sign = jnp.asarray(sign, jnp.int8)
        if hasattr(block, "eta_minus"):  # no decrease pending: the step sizes are as given
            q, none = _quarters(block, code), jnp.zeros(step.shape, bool)
            _check_quarters_hold(step, q)
            return q.encode_masks(step, sign > 0, sign < 0, none)
        return packing.encode_int8(step, sign)

    return block._replace(packed=jax.tree.map(pack, step_sizes, prev_signs, block.packed))
