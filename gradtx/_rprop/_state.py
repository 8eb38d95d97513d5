"""Rprop's state types, and the accessors that read any of them as floats and signs.

Every variant stores (Δ, sign g') per weight, packed or plain
(:mod:`gradtx._rprop._storage`); the "+" variants' packed state also a pending decrease
and the η-, Δmin, Δmax it is to be applied with, iRprop+ also the previous loss. No
field is scaled by a hyperparameter, so a state means the same whichever transform
reads it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._rprop._storage import Deferred, Packed, Plain, packed_limit, step_dtype


def value_dtype() -> Any:
    """The dtype of iRprop+'s E_{t-1}: float64 when x64 is enabled, else float32, so that
    a loss is compared without rounding."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class ScaleByRpropPackedState(NamedTuple):
    r"""Rprop's state: step size and previous sign packed in one integer per weight.

    4 B per float32 weight, for the "-" variants. Read it
    with :func:`rprop_step_sizes` and :func:`rprop_prev_signs`.

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
    r"""Rprop+'s state: Rprop's packed codes, a pending mark, and three scalars.

    5 B per float32 weight. Where the sign flipped, the code keeps :math:`\Delta_{t-1}`
    (the undo moves by it) and ``pending`` marks it; the next read applies the decrease
    with the :math:`\eta^-, \Delta_{\min}, \Delta_{\max}` held here (those of the step
    that marked it), so :func:`rprop_step_sizes` shows the papers' :math:`\Delta`.

    Attributes:
      packed: as in :class:`ScaleByRpropPackedState`.
      pending: ``uint8`` per weight, 1 where a decrease is pending.
      eta_minus, min_step_size, max_step_size: scalars.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> state = gradtx.scale_by_rprop(0.01, variant="rprop+").init({"w": jnp.zeros(2)})
      >>> type(state).__name__, state.pending["w"].dtype, float(state.eta_minus)
      ('ScaleByRpropPlusPackedState', dtype('uint8'), 0.5)
    """

    packed: Any
    pending: Any
    eta_minus: jax.Array
    min_step_size: jax.Array
    max_step_size: jax.Array


class ScaleByIRpropPlusPackedState(NamedTuple):
    r"""iRprop+'s state: Rprop+'s packed state plus the previous loss :math:`E_{t-1}`.

    Attributes:
      packed, pending, eta_minus, min_step_size, max_step_size: as in
        :class:`ScaleByRpropPlusPackedState`.
      prev_value: :math:`E_{t-1}`, a scalar, ``+inf`` before the first update.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> state = gradtx.scale_by_rprop(0.01, variant="irprop+").init({"w": jnp.zeros(2)})
      >>> type(state).__name__, float(state.prev_value)
      ('ScaleByIRpropPlusPackedState', inf)
    """

    packed: Any
    pending: Any
    prev_value: jax.Array
    eta_minus: jax.Array
    min_step_size: jax.Array
    max_step_size: jax.Array


class ScaleByRpropState(NamedTuple):
    r"""Rprop's unpacked state (``max_step_size`` an array): 5 B per float32 weight.

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

    step_sizes: Any
    prev_signs: Any


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
    prev_value: jax.Array


RPROP_STATES = (
    ScaleByRpropPackedState,
    ScaleByRpropPlusPackedState,
    ScaleByIRpropPlusPackedState,
    ScaleByRpropState,
    ScaleByIRpropPlusState,
)
# (store, reads the loss) -> the state type
STATE_TYPES = dict(
    zip(
        [(Packed, False), (Deferred, False), (Deferred, True), (Plain, False), (Plain, True)],
        RPROP_STATES,
    )
)
HELD = ("eta_minus", "min_step_size", "max_step_size")  # Deferred's scalars


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


def _store(block: Any) -> tuple[type, tuple[str, ...], Any]:
    """The store of a block state, its tree fields, and its held scalars."""
    if hasattr(block, "pending"):
        return Deferred, ("packed", "pending"), tuple(getattr(block, f) for f in HELD)
    if hasattr(block, "packed"):
        return Packed, ("packed",), None
    return Plain, ("step_sizes", "prev_signs"), None


def _read(state: Any, which: int) -> Any:
    store, fields, held = _store(find_rprop_state(state))

    def leaf(*arrays):
        step, sign = (s := store.like(arrays[0], held)).read(*arrays)
        return (step, s.as_int8(sign))[which]

    return jax.tree.map(leaf, *(getattr(find_rprop_state(state), f) for f in fields))


def rprop_step_sizes(state: Any) -> Any:
    r"""The step sizes :math:`\Delta` of an Rprop state, as a float tree mirroring the params.

    These are the step sizes the next update adapts, as stored. The dtype is the step
    sizes' (``accumulator_dtype``, else the param's; complex params have real ones of
    shape ``(..., 2)``).

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
    return _read(state, 0)


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
    return _read(state, 1)


def _checked(step: Any, dtype: Any, limit: float) -> jax.Array:
    """Step sizes cast to ``dtype``, refused where concrete and negative, NaN or above
    ``limit`` (a packed state's range)."""
    step = jnp.asarray(step).astype(dtype)
    if not isinstance(step, jax.core.Tracer):
        wide = np.asarray(step, np.float64)
        if not np.all((wide >= 0) & (wide <= limit)):  # NaN fails too
            raise ValueError(
                f"Invalid step sizes for an Rprop state: each must lie in [0, {limit:.4g}] "
                f"for {dtype}; got values from {np.min(wide)!r} to {np.max(wide)!r}."
            )
    return step


def with_values(block: Any, step_sizes: Any, prev_signs: Any) -> Any:
    """An Rprop block state of ``block``'s layout holding these step sizes and signs
    (the torch bridge's way in); the step sizes are cast to the block's dtype."""
    if not hasattr(block, "packed"):
        steps = jax.tree.map(
            lambda new, old: _checked(new, old.dtype, np.inf), step_sizes, block.step_sizes
        )
        return block._replace(step_sizes=steps, prev_signs=prev_signs)

    def pack(step, sign, code):
        step = _checked(step, step_dtype(code), packed_limit(step_dtype(code)))
        store = Packed.like(code)
        return store.write(step, store.of_int8(jnp.asarray(sign, jnp.int8)))[0]

    new = {"packed": jax.tree.map(pack, step_sizes, prev_signs, block.packed)}
    if hasattr(block, "pending"):  # no decrease pending: the step sizes are as given
        new["pending"] = jax.tree.map(jnp.zeros_like, block.pending)
    return block._replace(**new)
