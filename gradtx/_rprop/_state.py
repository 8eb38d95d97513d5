"""Rprop's state types and the accessors reading any of them as floats and signs. No field
is scaled by a hyperparameter, and a pending decrease keeps the η-, Δmin, Δmax it is to be
applied with, so a state means the same whichever transform reads it."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._rprop._storage import Deferred, Packed, Plain, packed_limit, step_dtype


def value_dtype() -> Any:
    """iRprop+'s E_{t-1} dtype: float64 under x64, else float32 (losses compared unrounded)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


class ScaleByRpropPackedState(NamedTuple):
    r"""The "-" variants' state: Δ and the previous sign packed in one integer per weight.

    ``packed`` holds, per weight, :math:`\Delta` and :math:`\operatorname{sign}(g')` in one
    unsigned integer (``uint32`` for float32 step sizes). Every Rprop state is read with
    :func:`rprop_step_sizes` and :func:`rprop_prev_signs`.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> state = gradtx.scale_by_rprop(0.01).init({"w": jnp.zeros(2)})
      >>> type(state).__name__, state.packed["w"].dtype
      ('ScaleByRpropPackedState', dtype('uint32'))
    """

    packed: Any


class ScaleByRpropPlusPackedState(NamedTuple):
    r"""Rprop+'s state: Rprop's packed codes, a pending mark, and three scalars.

    ``packed`` is as in :class:`ScaleByRpropPackedState`, but holds :math:`\Delta_{t-1}`
    where ``pending`` (``uint8``) is 1: a decrease :func:`rprop_step_sizes` applies with
    the scalars ``eta_minus``, ``min_step_size``, ``max_step_size`` of the step that set it.

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
    r"""iRprop+'s state: :class:`ScaleByRpropPlusPackedState`'s fields and ``prev_value``.

    ``prev_value`` is the previous loss :math:`E_{t-1}`, ``+inf`` before the first update.

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

    ``step_sizes``: :math:`\Delta` in the step-size dtype; ``prev_signs``: the sign of the
    previous (possibly zeroed) gradient :math:`g'`, ``int8``; both like the params.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.inject_hyperparams(gradtx.scale_by_rprop)(0.01, max_step_size=50.0)
      >>> type(tx.init({"w": jnp.zeros(2)}).inner_state).__name__
      'ScaleByRpropState'
    """

    step_sizes: Any
    prev_signs: Any


class ScaleByIRpropPlusState(NamedTuple):
    r"""iRprop+'s unpacked state: :class:`ScaleByRpropState`'s fields and ``prev_value``, E_{t-1}.

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx = gradtx.scale_by_rprop(0.01, max_step_size=jnp.asarray(50.0), variant="irprop+")
      >>> type(tx.init({"w": jnp.zeros(2)})).__name__
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


def _read(state: Any, which: int) -> Any:
    """Step sizes (``which`` 0) or signs (1) of the one Rprop state inside ``state``."""
    found = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, RPROP_STATES))
    found = [s for s in found if isinstance(s, RPROP_STATES)]
    if len(found) != 1:
        raise ValueError(
            f"expected one Rprop state (from scale_by_rprop or rprop) inside the state, "
            f"found {len(found)}; pass that block's state."
        )
    block = found[0]
    store = next(k for k, t in STATE_TYPES.items() if isinstance(block, t))[0]
    held = tuple(getattr(block, f) for f in HELD) if store is Deferred else None
    fields = [f for f in block._fields if f not in (*HELD, "prev_value")]
    return _read_leaves(store, which, held, *(getattr(block, f) for f in fields))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _read_leaves(store: type, which: int, held: Any, *fields: Any) -> Any:
    """One program for the tree (eagerly, each op and leaf shape would compile its own)."""

    def leaf(*arrays):
        step, sign = (s := store.like(arrays[0], held)).read(*arrays)
        return (step, s.as_int8(sign))[which]

    return jax.tree.map(leaf, *fields)


def rprop_step_sizes(state: Any) -> Any:
    r"""The step sizes :math:`\Delta` of an Rprop state, as a float tree mirroring the params.

    Those the next update adapts, in ``accumulator_dtype`` (else the param's; complex
    params have real ones of shape ``(..., 2)``).

    Args:
      state: a :func:`gradtx.scale_by_rprop` state or one holding it (a chain's, ...).

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
      state: as for :func:`rprop_step_sizes`.

    Returns:
      A tree of ``int8`` arrays like the params: -1, 0 or +1 (0 where :math:`g'` was zeroed).

    Example:
      >>> import jax.numpy as jnp, gradtx
      >>> tx, params = gradtx.rprop(), {"w": jnp.zeros(3)}
      >>> _, state = tx.update({"w": jnp.array([2.0, -1.0, 0.0])}, tx.init(params), params)
      >>> gradtx.rprop_prev_signs(state)["w"]
      Array([ 1, -1,  0], dtype=int8)
    """
    return _read(state, 1)


def _checked(step: Any, dtype: Any, limit: float) -> jax.Array:
    """Step sizes cast to ``dtype``; concrete ones refused if negative, NaN or > ``limit``."""
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
    """``block`` holding these step sizes (cast to its dtype) and signs: the torch bridge's."""
    if not hasattr(block, "packed"):
        steps = jax.tree.map(
            lambda new, old: _checked(new, old.dtype, np.inf), step_sizes, block.step_sizes
        )
        return block._replace(step_sizes=steps, prev_signs=prev_signs)

    store = Deferred if hasattr(block, "pending") else Packed

    def pack(step, sign, code):
        return stored(store, _checked(step, step_dtype(code), packed_limit(step_dtype(code))), sign)

    tree = jax.tree.structure(block.packed)
    written = tree.flatten_up_to(jax.tree.map(pack, step_sizes, prev_signs, block.packed))
    columns = [tree.unflatten(c) for c in zip(*written)]  # packed (and pending): fields 0, 1
    return block._replace(**dict(zip(block._fields, columns)))


@functools.partial(jax.jit, static_argnums=0)
def stored(store: type, step: jax.Array, sign: Any) -> tuple:
    """One leaf's state arrays in ``store``'s form (nothing pending), one program per leaf."""
    s = store.like(step)
    return s.write(step, s.of_int8(jnp.asarray(sign, jnp.int8)))
