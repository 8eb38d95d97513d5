r"""Rprop, resilient backpropagation: a per-weight step size adapted by gradient signs.

Four variants, each a few lines of per-weight math below, in the notation of the papers:

* ``"rprop+"``: Rprop with weight-backtracking, Riedmiller & Braun, "A direct adaptive
  method for faster backpropagation learning: the RPROP algorithm", ICNN 1993.
* ``"rprop-"``: Rprop without weight-backtracking, Igel & Hüsken, "Improving the Rprop
  learning algorithm", NC 2000 (and "Empirical evaluation of the improved Rprop learning
  algorithms", Neurocomputing 50, 2003).
* ``"irprop-"``: improved Rprop without backtracking (Igel & Hüsken 2000, 2003); this is
  ``torch.optim.Rprop``'s rule, and the default.
* ``"irprop+"``: improved Rprop with backtracking only when the loss went up (Igel &
  Hüsken 2000, 2003); it needs the loss: ``update(grads, state, params, value=loss)``.

Notation: :math:`g` the gradient, :math:`g'` the stored previous gradient, :math:`\Delta`
the step size, :math:`\Delta w` the last weight change, :math:`E` the loss.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import jax.numpy as jnp

from gradtx import _rprop_layouts as layouts
from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import Scalars, leafwise
from gradtx._rprop_state import value_dtype

RpropVariant = Literal["irprop-", "rprop-", "rprop+", "irprop+"]
RPROP_VARIANTS: tuple[RpropVariant, ...] = typing.get_args(RpropVariant)
"""The names ``variant=`` accepts, the default (torch's rule) first."""


# --------------------------------------------------------------------------------------
# The four rules, per weight
# --------------------------------------------------------------------------------------
#
# Every rule reads the stored g' only through its sign, and returns the new state
# (Δ_t, sign g'_t); every variant then moves by the update u_t = sign(g'_t)·Δ_t = -Δw_t
# (it points uphill, like a gradient; the alias negates it), which the layouts read back
# from the new state (gradtx/_rprop_layouts.py), except where the "+" variants backtrack.
# Signs come in the layout's representation (``prev``: masks, ``Signs``, or the packed
# codes' offsets, ``ThirdsSigns``); ``prev.of(g)`` gives g's in the same one, and
# ``agreement`` judges g_t·g'_{t-1} > 0 ("same") and < 0 ("flip") by the signs.
#
# The "+" variants undo "the previous weight change Δw_{t-1}" without storing it: they
# undo only where g_t·g'_{t-1} < 0, so where g'_{t-1} != 0, and every step that leaves
# g'_{t-1} != 0 moved by Δw_{t-1} = -sign(g'_{t-1})·Δ_{t-1} exactly (both branches of the
# paper that store g' = g move so). Hence u_{t-1} = sign(g'_{t-1})·Δ_{t-1}, the stored
# sign times the stored step size, bit for bit.


def _rules(eta_minus, eta_plus, min_step_size, max_step_size):
    def adapt(step, same, flip, bounds=(min_step_size, max_step_size)):
        """Δ_t = min(Δ_{t-1}·η+, Δmax) if g·g' > 0; max(Δ_{t-1}·η-, Δmin) if g·g' < 0;
        Δ_{t-1} otherwise. Clipped into [Δmin, Δmax] in every case, as torch does, which
        only matters on the first step when ``learning_rate`` lies outside the bounds.
        ``bounds``: the packed layout's, where it scales the step sizes."""
        up, down = (jnp.asarray(eta, step.dtype) for eta in (eta_plus, eta_minus))
        step = jnp.where(same, step * up, jnp.where(flip, step * down, step))
        return jnp.clip(step, *bounds)

    def irprop_minus(g, step, prev):
        """iRprop- (Igel & Hüsken 2000; torch.optim.Rprop), per weight::

            if g·g' > 0:  Δ = min(Δ·η+, Δmax)
            elif g·g' < 0:  Δ = max(Δ·η-, Δmin);  g = 0
            w = w - sign(g)·Δ;  g' = g

        Returns the new (Δ, sign g') and no backtracking.
        """
        s = prev.of(g)
        same, flip = s.agreement(prev)
        return (adapt(step, same, flip), s.unless(flip)), None  # g = 0: no move, g' = 0

    def rprop_minus(g, step, prev):
        """Rprop- (Igel & Hüsken 2000), per weight::

            if g·g' > 0:  Δ = min(Δ·η+, Δmax)
            elif g·g' < 0:  Δ = max(Δ·η-, Δmin)
            w = w - sign(g)·Δ;  g' = g

        Returns the new (Δ, sign g') and no backtracking.
        """
        s = prev.of(g)
        return (adapt(step, *s.agreement(prev)), s), None

    def rprop_plus(g, step, prev, *, worse=True):
        """Rprop+ (Riedmiller & Braun 1993); iRprop+ when ``worse`` is
        E_t > E_{t-1} (Igel & Hüsken 2000)::

            if g·g' >= 0:  Δ = min(Δ·η+, Δmax) if g·g' > 0;  Δw = -sign(g)·Δ;  w = w + Δw;  g' = g
            if g·g' < 0:   Δ = max(Δ·η-, Δmin);  if worse: w = w - Δw_{t-1};  g' = 0

        Returns the new (Δ, sign g') and the backtracking: where g·g' < 0, by
        u = -u_{t-1} (see above) if ``worse``, else by 0.
        """
        s = prev.of(g)
        same, flip = s.agreement(prev)
        undo = jnp.where(worse, -prev.times(step), jnp.zeros((), step.dtype))
        return (adapt(step, same, flip), s.unless(flip)), (flip, undo)  # g' = 0

    def rprop_plus_deferred(g, step, prev, pending, bounds):
        """Rprop+ as above, with the decrease after a sign change deferred one step.

        Where g·g' < 0 the new state keeps Δ_{t-1}, the step size that the undo moves
        by, and marks it ``pending``; the next step has g' = 0 there and so applies the
        factor 1, which a pending weight replaces by η-: it reaches
        max(Δ_{t-1}·η-, Δmin), the step size of the rule above, one step later and bit
        for bit. Returns the new Δ, sign g_t, and where the sign flipped: there
        g' = 0 and the decrease is pending, which the layout stores instead of sign g_t.
        ``bounds``: [Δmin, Δmax], scaled as the layout scales Δ.
        """
        s = prev.of(g)
        same, flip = s.agreement(prev)
        return jnp.where(flip, step, adapt(step, same, pending, bounds)), s, flip

    return {
        "irprop-": irprop_minus,
        "rprop-": rprop_minus,
        "rprop+": rprop_plus,
        "rprop+ deferred": rprop_plus_deferred,
    }


# --------------------------------------------------------------------------------------
# The transform
# --------------------------------------------------------------------------------------


def _loss_memory(carried: Scalars | None) -> Scalars:
    """iRprop+'s scalar state: E_{t-1}, +inf before the first update. Each update reads
    the loss E_t (``value=``) and hands every weight ``worse`` = E_t > E_{t-1}.
    ``carried``: the layout's constant scalar fields, held beside it."""
    carried = carried or layouts.constants()

    def init():
        return {"prev_value": jnp.array(jnp.inf, value_dtype()), **carried.init()}

    def step(values, *, value):
        value = jnp.asarray(value)
        if value.shape != ():
            raise ValueError(f"value must be a scalar loss, got shape {value.shape}.")
        prev = values["prev_value"]
        held = {k: values[k] for k in carried.fields}
        return {"worse": value > prev}, {"prev_value": value.astype(prev.dtype), **held}

    return Scalars(("prev_value", *carried.fields), init, step)


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
    clipped into the bounds at every step (the first included, as torch does):

    .. math::
        \Delta_t = \operatorname{clip}\big(\Delta_{t-1}\cdot
            \begin{cases}\eta^+ & g_t g'_{t-1} > 0\\ \eta^- & g_t g'_{t-1} < 0\\
            1 & \text{otherwise}\end{cases},\ \Delta_{\min},\ \Delta_{\max}\big).

    ``variant`` picks what happens next:

    * ``"irprop-"`` (default; Igel & Hüsken 2000; ``torch.optim.Rprop``): where
      :math:`g_t g'_{t-1} < 0` set :math:`g_t = 0`; :math:`u_t = \operatorname{sign}(g_t)
      \Delta_t`; :math:`g'_t = g_t`.
    * ``"rprop-"`` (Igel & Hüsken 2000): :math:`u_t = \operatorname{sign}(g_t)\Delta_t`
      always; :math:`g'_t = g_t`.
    * ``"rprop+"`` (Riedmiller & Braun 1993, weight-backtracking): where
      :math:`g_t g'_{t-1} \ge 0`, :math:`u_t = \operatorname{sign}(g_t)\Delta_t` and
      :math:`g'_t = g_t`; where :math:`g_t g'_{t-1} < 0`, undo the previous move,
      :math:`u_t = -u_{t-1}`, and :math:`g'_t = 0`.
    * ``"irprop+"`` (Igel & Hüsken 2000): as ``"rprop+"``, but the previous move is undone
      only if the loss went up, :math:`E_t > E_{t-1}` (else :math:`u_t = 0` there), with
      :math:`E_{-1} = +\infty`. The loss :math:`E_t` (at the params the gradients were taken
      at) must be passed as ``update(grads, state, params, value=loss)``; ``chain`` passes it
      on. Without it ``update`` raises ``TypeError``. A NaN loss is never "worse".

    Chain it with ``scale(-1.0)`` to descend (as :func:`gradtx.rprop` does); the "+"
    variants undo the previous *output of this block*, which is the previous weight change
    when the blocks after it are fixed and linear.

    **State.** :math:`\Delta` (in ``accumulator_dtype``, default the param's dtype) and the
    *sign* of :math:`g'`, packed into one unsigned integer per weight: 4 bytes per float32
    weight for every variant (torch and optax keep 8; 2 per float16/bfloat16, 8 per
    float64). Read it with :func:`gradtx.rprop_step_sizes` and
    :func:`gradtx.rprop_prev_signs`. The "+" variants need no stored :math:`\Delta w`: they
    undo only where :math:`g'_{t-1} \ne 0`, and there :math:`u_{t-1} =
    \operatorname{sign}(g'_{t-1})\Delta_{t-1}` exactly. Where they undo, they keep
    :math:`\Delta_{t-1}` in the state, marked, and apply its decrease at the next step
    (where :math:`g' = 0`, so the factor would be 1): the same step sizes, and an update
    that reads only the new state, which XLA can write in place in a donated step. Their
    state also holds :math:`\eta^-` and :math:`\Delta_{\min}` as scalars (for the
    accessors, which apply a pending decrease), and ``"irprop+"``'s :math:`E_{t-1}` (float64
    when x64 is enabled, else float32).

    The packing needs ``max_step_size`` below about 1.46e13 for the "-" variants (float16
    step sizes: 85.25). The "+" variants store :math:`\Delta\cdot 2^{-k}`, scaled exactly
    into the lowest binades of normal floats from :math:`\Delta_{\min} = m\cdot 2^e`
    (:math:`1 \le m < 2`): they need :math:`\Delta_{\max} < 2^{e+127}` in float32 and
    bfloat16 (127 binades; torch's 1e-6 to 50 takes 26), :math:`2^{e+15}` in float16 (15
    binades, which torch's bounds exceed), and :math:`\Delta_{\max} < 2` where
    :math:`\Delta_{\min}` is 0.
    ``init`` says when a float16 leaf does not fit; ``accumulator_dtype=jnp.float32``
    lifts it. Otherwise, or when the bounds or :math:`\eta^-` are arrays
    (``inject_hyperparams``), step sizes and signs are kept apart
    (:class:`ScaleByRpropState`, 5 bytes per float32 weight). The initial state holds
    :math:`\Delta_0` already clipped into the bounds.

    **Where it can differ from torch.** torch multiplies :math:`g_t g'_{t-1}` and takes the
    sign of the product; where two tiny gradients' product underflows to 0 (float32:
    :math:`|g_t g'_{t-1}| < 7\cdot 10^{-46}`, e.g. both near :math:`10^{-23}`; float64: below
    :math:`2.5\cdot 10^{-324}`) torch reads "no information" (factor 1, no zeroing), while
    gradtx reads the signs, which is the paper's rule: the sign of a product is the product
    of the signs. Signs are read from the bits, so subnormal gradients have the sign torch
    gives them even under XLA's flush-to-zero on CPU. ``sign(NaN) = 0`` (torch's
    convention): a NaN gradient leaves its weight and step size unchanged this step and
    gives no sign information to the next, as in torch.

    ``accumulator_dtype`` (optax's name in ``trace``/``sgd``): the dtype of the step sizes,
    ``None`` for the param's; e.g. ``jnp.float32`` keeps bfloat16 params' step sizes in
    float32 (the update is rounded to the param's dtype).

    Same arguments and defaults as ``optax.scale_by_rprop``, which (0.2.8) differs: it
    returns each step's update one step late (its first update is zero), and it does not
    clip :math:`\Delta` when :math:`g_t g'_{t-1} = 0`, so a ``learning_rate`` outside the
    bounds is used as is on the first step. optax and torch offer only iRprop-.

    Args:
      learning_rate: :math:`\Delta_0`, the initial step size (``>= 0``), clipped into the
        bounds.
      eta_minus: :math:`\eta^-`, the factor after a sign change (in ``(0, 1)``).
      eta_plus: :math:`\eta^+`, the factor while the sign holds (``> 1``).
      min_step_size: :math:`\Delta_{\min}` (``>= 0``).
      max_step_size: :math:`\Delta_{\max}` (``>= min_step_size``).
      variant: ``"irprop-"`` (torch's, the default), ``"rprop-"``, ``"rprop+"`` or
        ``"irprop+"`` (which needs ``value=loss`` at each update).

    Returns:
      A :class:`~gradtx.GradientTransformation` whose update is :math:`u_t = -\Delta w_t`.

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
    layout = layouts.choose(variant, eta_minus, min_step_size, max_step_size)

    def init_leaf(p):
        dtype = jnp.dtype(accumulator_dtype or p.dtype)
        # Δ0 = learning_rate clipped into the bounds (the first update clips it anyway),
        # in the step sizes' dtype even where the bounds are arrays of a wider one
        step = jnp.clip(jnp.full(p.shape, learning_rate, dtype), min_step_size, max_step_size)
        return layout.init(jnp.abs(step).astype(dtype))

    rules = _rules(eta_minus, eta_plus, min_step_size, max_step_size)
    name = "rprop+" if variant == "irprop+" else variant  # iRprop+ is Rprop+ given `worse`
    if layout.defers:
        name = "rprop+ deferred"  # the quarters run Rprop+ with its decrease deferred
    scalars, extra_args = layout.scalars, ()
    if variant == "irprop+":
        scalars, extra_args = _loss_memory(scalars), ("value",)
    return leafwise(
        layout.wrap(rules[name]),
        state=layout.state,
        init_leaf=init_leaf,
        scalars=scalars,
        extra_args=extra_args,
    )
