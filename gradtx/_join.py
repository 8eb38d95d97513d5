r"""Hand-offs between optimizers as one transform: :func:`join_transforms`.

The transform counterpart of :func:`gradtx.join_schedules`: Adam then L-BFGS (the usual
recipe for physics-informed networks), Rprop then L-BFGS, or any other sequence, run as
one jit-compiled step that picks the active transform with ``lax.switch`` on a step
counter, so crossing a boundary neither branches in Python nor recompiles.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx._base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    abstract_aware,
    safe_increment,
    update_with_extra_args,
)


class JoinTransformsState(NamedTuple):
    """The state of :func:`join_transforms`.

    Attributes:
      count: ``int32``, the updates made so far (saturating at the largest ``int32``).
      inner_states: a tuple with one state per joined transform, in order. A transform's
        state changes only while that transform runs; before its turn it is its
        ``init(params)``, after its turn it is what it was at its last step.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.join_transforms([gradtx.scale(-0.1), gradtx.identity()], [3])
      >>> tx.init({"w": jnp.zeros(2)})
      JoinTransformsState(count=Array(0, dtype=int32),
                          inner_states=(EmptyState(), EmptyState()))
    """

    count: jax.Array
    inner_states: tuple[OptState, ...]


def _check_transforms(transforms: Any) -> tuple[Any, ...]:
    is_one = hasattr(transforms, "init") and hasattr(transforms, "update")
    if is_one or isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
        raise TypeError(
            f"Invalid transforms: {transforms!r} (must be a list or tuple of gradient "
            "transformations, e.g. [optax.adam(1e-3), optax.lbfgs()])."
        )
    if not transforms:
        raise ValueError("Invalid transforms: [] (need at least one transform).")
    for i, tx in enumerate(transforms):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"Invalid transforms[{i}]: {tx!r} (must be a gradient transformation, an "
                "object with init and update; did you pass optax.adam instead of "
                "optax.adam(1e-3)?)."
            )
    return tuple(transforms)


def _check_boundaries(boundaries: Any, n_transforms: int) -> tuple[int, ...]:
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
        raise ValueError(
            f"Invalid boundaries: {boundaries!r} (must be a list of ints, the steps at "
            "which each transform after the first takes over)."
        )
    if len(boundaries) != n_transforms - 1:
        raise ValueError(
            f"Invalid boundaries: {list(boundaries)!r} (need len(transforms) - 1 = "
            f"{n_transforms - 1} boundaries for {n_transforms} transforms)."
        )
    previous = 0
    for i, b in enumerate(boundaries):
        if isinstance(b, bool) or not isinstance(b, numbers.Integral):
            raise ValueError(
                f"Invalid boundaries[{i}]: {b!r} (must be a Python int, a step count)."
            )
        if b <= previous:
            raise ValueError(
                f"Invalid boundaries[{i}]: {b!r} (boundaries must be positive and strictly "
                f"increasing; got {list(boundaries)!r})."
            )
        if b > jnp.iinfo(jnp.int32).max:
            raise ValueError(f"Invalid boundaries[{i}]: {b!r} (must fit in int32).")
        previous = b
    return tuple(int(b) for b in boundaries)


def _distinct(states: Any, params: Params) -> Any:
    """``states`` with every array that appears twice, or is one of the params, copied:
    ``optax.lbfgs().init`` returns one zeros array in two fields, which a step that
    donates the state would donate twice (XLA refuses)."""
    seen = {id(x) for x in jax.tree.leaves(params)}

    def fresh(x):
        if not isinstance(x, jax.Array) or id(x) not in seen:
            seen.add(id(x))
            return x
        return jnp.copy(x)

    return jax.tree.map(fresh, states)


def join_transforms(transforms: Sequence[Any], boundaries: Sequence[int]) -> GradientTransformation:
    r"""Run several transforms one after the other: the i-th between two boundaries.

    With :math:`t` the number of updates made so far and boundaries
    :math:`0 < b_0 < b_1 < \dots < b_{n-2}` (and :math:`b_{-1} = 0`,
    :math:`b_{n-1} = \infty`), update :math:`t` is made by transform
    :math:`i(t) = \#\{j : b_j \le t\}`:

    Formula::

        i(t) = number of boundaries b_j <= t
        (u_t, s_(t+1)[i(t)]) = tx_i(t).update(g_t, s_t[i(t)], theta_t, **extra_args)
        s_(t+1)[k] = s_t[k]                   for every k != i(t)

    .. math::
        i(t) = \#\{j : b_j \le t\}, \qquad
        (u_t, s^{i(t)}_{t+1}) = \mathrm{tx}_{i(t)}(g_t, s^{i(t)}_t, \theta_t), \qquad
        s^k_{t+1} = s^k_t \ (k \ne i(t)).

    So ``join_transforms([adam, lbfgs], [1000])`` makes updates 0 to 999 with Adam and
    the rest with L-BFGS, as ``join_schedules`` counts. The step is one compiled program:
    ``lax.switch`` on the counter picks the transform, so crossing a boundary does not
    recompile and only the active transform's update is computed.

    **State: every transform's state is made at ``init`` and kept.** A transform's state
    changes only while it runs, so a later transform starts from its own ``init(params)``
    state (made with the first params), and a transform that runs again later resumes.
    Made at ``init`` rather than at the switch because the state's structure must not
    change between steps (one compiled step, checkpoints of one shape), and because the
    initial state of a transform that remembers gradients (Rprop, RMSprop, Adam, L-BFGS)
    depends only on the params' shapes: starting from it at the switch is what a fresh
    ``init`` would give (``optax.lbfgs`` stores the first params but does not read them
    before its first update; ``tests/test_join.py`` checks the hand-off against a fresh
    ``init`` at the switch). A transform whose ``init``
    copies param *values* (``optax.lookahead``'s slow weights) sees the first params.
    An array that ``init`` returns twice (``optax.lbfgs`` shares one zeros array between
    two fields) is copied, so a step may donate the state.

    **Extra arguments** (``value=loss``, ``grad=``, ``value_fn=`` for ``optax.lbfgs``'s
    line search) are forwarded to whichever transform runs, and dropped for a plain optax
    transform that takes none (as ``optax.chain`` does). Pass, on every step, the ones any
    of the joined transforms needs. The updates of every transform must have the params'
    structure and dtypes (``lax.switch`` needs one output type).

    Args:
      transforms: the transforms, in order (gradtx or optax gradient transformations).
      boundaries: ``len(transforms) - 1`` Python ints, positive and strictly increasing:
        the update counts at which each transform after the first takes over.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a
      :class:`JoinTransformsState`.

    Raises:
      TypeError: ``transforms`` is not a sequence of transforms.
      ValueError: ``boundaries`` has the wrong length, a non-int, or is not positive and
        strictly increasing.

    Example:
      Rprop for 20 steps, then plain gradient descent, on :math:`f(w) = \sum w^2`:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.join_transforms(
      ...     [gradtx.rprop(0.1), gradtx.scale(-0.25)], boundaries=[20])
      >>> params = jnp.array([3.0, -2.0])
      >>> state = tx.init(params)
      >>> step = jax.jit(lambda p, s: tx.update(jax.grad(lambda w: jnp.sum(w**2))(p), s, p))
      >>> for _ in range(25):
      ...     updates, state = step(params, state)
      ...     params = gradtx.apply_updates(params, updates)
      >>> print(int(state.count), bool(jnp.abs(params).max() < 1e-2))
      25 True
    """
    transforms = _check_transforms(transforms)
    bounds = _check_boundaries(boundaries, len(transforms))
    updaters = [update_with_extra_args(tx) for tx in transforms]

    @abstract_aware
    def init(params: Params) -> JoinTransformsState:
        states = tuple(tx.init(params) for tx in transforms)
        return JoinTransformsState(jnp.zeros([], jnp.int32), _distinct(states, params))

    def update(updates: Updates, state: JoinTransformsState, params=None, **extra_args):
        if len(transforms) == 1:
            new_updates, inner = updaters[0](updates, state.inner_states[0], params, **extra_args)
            return new_updates, JoinTransformsState(safe_increment(state.count), (inner,))

        states = tuple(state.inner_states)

        def branch(i):
            # closes over the extra arguments: value_fn is a function, not an operand
            def run(_):
                new_updates, inner = updaters[i](updates, states[i], params, **extra_args)
                return new_updates, (*states[:i], inner, *states[i + 1 :])

            return run

        index = sum((state.count >= b).astype(jnp.int32) for b in bounds)
        new_updates, inner_states = jax.lax.switch(
            index, [branch(i) for i in range(len(transforms))], None
        )
        return new_updates, JoinTransformsState(safe_increment(state.count), inner_states)

    return GradientTransformation(init, update)
