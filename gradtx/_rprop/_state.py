"""Rprop's state types, and the accessors that read any of them as floats and signs.

No field is scaled by a hyperparameter, and a pending decrease keeps the η-, Δmin, Δmax
it is to be applied with, so a state means the same whichever transform reads it.
"""

from __future__ import annotations

import functools
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
    r"""The "-" variants' state: Δ and the previous sign packed in one integer per weight.

    Read it with :func:`rprop_step_sizes` and :func:`rprop_prev_signs`.

    Attributes:
      packed: per weight, :math:`\Delta` and :math:`\operatorname{sign}(g')` in one unsigned
        integer (``uint32`` for float32 step sizes).

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> state = gradtx.scale_by_rprop(0.01).init({"w": jnp.zeros(2)})
      >>> type(state).__name__, state.packed["w"].dtype
      ('ScaleByRpropPackedState', dtype('uint32'))
    """

    packed: Any


class ScaleByRpropPlusPackedState(NamedTuple):
    r"""Rprop+'s state: Rprop's packed codes, a pending mark, and three scalars.

    Attributes:
      packed: as in :class:`ScaleByRpropPackedState`, holding :math:`\Delta_{t-1}` where
        a decrease is pending (:func:`rprop_step_sizes` applies it).
      pending: ``uint8`` per weight, 1 where a decrease is pending.
      eta_minus, min_step_size, max_step_size: scalars, those of the step that set the
        marks, applied with them.

    Example:
      >>> import jax.numpy as jnp, gradtx
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
      >>> import jax.numpy as jnp, gradtx
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
    r"""Rprop's unpacked state (``max_step_size`` an array, or beyond packing's range).

    Attributes:
      step_sizes: :math:`\Delta` per weight, in the step-size dtype, like the params.
      prev_signs: the sign of the previous (possibly zeroed) gradient :math:`g'`, ``int8``.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.scale_by_rprop)(0.01, max_step_size=50.0)
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
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.scale_by_rprop, static_args="variant")(
      ...     learning_rate=0.01, max_step_size=50.0, variant="irprop+")
      >>> type(tx.init({"w": jnp.zeros(2)}).inner_state).__name__
      'ScaleByIRpropPlusState'
    """

    step_sizes: Any
    prev_signs: Any
    prev_value: jax.Array


STATE_TYPES = {  # (store, reads the loss) -> the state type
    (Packed, False): ScaleByRpropPackedState,
    (Deferred, False): ScaleByRpropPlusPackedState,
    (Deferred, True): ScaleByIRpropPlusPackedState,
    (Plain, False): ScaleByRpropState,
    (Plain, True): ScaleByIRpropPlusState,
}
RPROP_STATES = tuple(STATE_TYPES.values())
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


def _read(state: Any, which: int) -> Any:
    """Step sizes (``which`` 0) or signs (1) of the Rprop state inside ``state``."""
    block = find_rprop_state(state)
    store = next(k for k, t in STATE_TYPES.items() if isinstance(block, t))[0]
    held = tuple(getattr(block, f) for f in HELD) if store is Deferred else None
    fields = [f for f in block._fields if f not in (*HELD, "prev_value")]
    return _read_leaves(store, which, held, *(getattr(block, f) for f in fields))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _read_leaves(store: type, which: int, held: Any, *fields: Any) -> Any:
    """One program for the whole tree (eagerly, one program per op and leaf shape would
    compile: seconds for a model of many shapes)."""

    def leaf(*arrays):
        step, sign = (s := store.like(arrays[0], held)).read(*arrays)
        return (step, s.as_int8(sign))[which]

    return jax.tree.map(leaf, *fields)


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

    store = Deferred if hasattr(block, "pending") else Packed

    def pack(step, sign, code):
        return stored(store, _checked(step, step_dtype(code), packed_limit(step_dtype(code))), sign)

    fields = ("packed", "pending") if store is Deferred else ("packed",)
    tree = jax.tree.structure(block.packed)
    written = tree.flatten_up_to(jax.tree.map(pack, step_sizes, prev_signs, block.packed))
    columns = [tree.unflatten([w[i] for w in written]) for i in range(len(fields))]
    return block._replace(**dict(zip(fields, columns)))


@functools.partial(jax.jit, static_argnums=0)
def stored(store: type, step: jax.Array, sign: Any) -> tuple:
    """The state arrays of one leaf holding Δ = ``step`` and the signs ``sign`` (-1, 0,
    +1; a :class:`Deferred` store with no decrease pending), in ``store``'s form: one
    program per store and leaf signature (eagerly, each op would compile on its own)."""
    s = store.like(step)
    return s.write(step, s.of_int8(jnp.asarray(sign, jnp.int8)))
