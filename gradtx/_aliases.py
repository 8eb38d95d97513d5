"""The optimizers users ask for by name: ``rprop`` and ``rmsprop``.

Each is a documented :func:`~gradtx.chain` of building blocks with the arguments and
defaults of ``torch.optim`` (``lr`` spelled ``learning_rate``), and reproduces its
numbers.
"""

from __future__ import annotations

from typing import Any

from gradtx import _validation as check
from gradtx._base import GradientTransformation, ScalarOrSchedule, identity
from gradtx._combine import chain
from gradtx._momentum import trace
from gradtx._rms import scale_by_rms, scale_by_stddev
from gradtx._rprop import RpropVariant, scale_by_rprop
from gradtx._scaling import scale, scale_by_learning_rate
from gradtx._spellings import other_spellings
from gradtx._weight_decay import add_decayed_weights
from gradtx._wrappers import negated_value

_TORCH_LR = "use learning_rate= (torch's lr=, as the JAX ecosystem spells it)"
_PAIR = "use {pair}, torch's pair; gradtx.scale_by_rprop takes {name}="
_RPROP_SPELLINGS = {
    "lr": _TORCH_LR,
    **{
        n: _PAIR.format(pair="etas=(eta_minus, eta_plus)", name=n)
        for n in ("eta_minus", "eta_plus")
    },
    **{
        n: _PAIR.format(pair="step_sizes=(min, max)", name=n)
        for n in ("min_step_size", "max_step_size")
    },
}
_RMSPROP_SPELLINGS = {
    "lr": _TORCH_LR,
    "decay": "use alpha= (torch's name for the decay of the average of g**2)",
    "initial_scale": "rmsprop starts from v_0 = 0 as torch does; for another start chain "
    "gradtx.scale_by_rms(alpha, eps, initial_scale=..., eps_in_sqrt=False) yourself",
    "eps_in_sqrt": "rmsprop adds eps outside the square root as torch does; "
    "gradtx.scale_by_rms and gradtx.scale_by_stddev take eps_in_sqrt=",
    "bias_correction": "rmsprop has none, as torch; gradtx.scale_by_rms and "
    "gradtx.scale_by_stddev take bias_correction=",
    "nesterov": "rmsprop has none, as torch; for Nesterov momentum chain "
    "gradtx.trace(momentum, nesterov=True) after the normaliser",
}


@other_spellings(_RPROP_SPELLINGS)
def rprop(
    learning_rate: float = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50.0),
    *,
    maximize: bool = False,
    variant: RpropVariant = "irprop-",
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Rprop with ``torch.optim.Rprop``'s arguments, defaults and numbers.

    The chain::

        chain(
            scale(-1.0),                 # only if maximize
            scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step, max_step,
                           variant=variant, accumulator_dtype=accumulator_dtype),
            scale(-1.0),                 # descend
        )

    ``variant`` is one of ``"irprop-"`` (the default, torch's rule), ``"rprop-"``,
    ``"rprop+"`` (Riedmiller & Braun 1993) and ``"irprop+"`` (Igel & Hüsken 2000); see
    :func:`gradtx.scale_by_rprop` for their rules. ``"irprop+"`` needs the loss:
    ``update(grads, state, params, value=loss)``; with ``maximize=True`` pass the objective
    being maximised, and a *fall* of it counts as getting worse (the chain hands
    ``scale_by_rprop`` ``value=-objective``). ``accumulator_dtype`` is the dtype of the
    step sizes (``None``: the param's); the state packs each step size with its sign, 4
    bytes per float32 weight (see :func:`gradtx.scale_by_rprop`, and
    :func:`gradtx.rprop_step_sizes` to read it).

    The rule (iRprop-, see :func:`gradtx.scale_by_rprop`), with :math:`\Delta_0` =
    ``learning_rate``, ``etas`` = :math:`(\eta^-, \eta^+)` and ``step_sizes`` =
    :math:`(\Delta_{\min}, \Delta_{\max})`:

    Formula::

        step_t = clip(step_(t-1) * eta, min_step, max_step)
                 eta = eta_plus if g_t * g'_(t-1) > 0, eta_minus if < 0, else 1
        g'_t = 0 if g_t * g'_(t-1) < 0, else g_t
        theta_t = theta_(t-1) - sign(g'_t) * step_t

    .. math::
        \Delta_t = \operatorname{clip}(\Delta_{t-1}\cdot\eta^{\pm\text{ or }1},
            \Delta_{\min}, \Delta_{\max}), \quad
        \theta_t = \theta_{t-1} - \operatorname{sign}(g'_t)\,\Delta_t,

    where :math:`\eta^+` applies when :math:`g_t g'_{t-1} > 0`, :math:`\eta^-` when it is
    negative (and then :math:`g'_t = 0`, no move), 1 otherwise. Matches torch bit for
    bit in float32 and float64 (tests: ``tests/parity/test_torch_rprop.py``). Validation follows
    torch: ``learning_rate >= 0``, ``0 < etas[0] < 1 < etas[1]``, and gradtx also
    requires ``0 <= step_sizes[0] <= step_sizes[1]``; all finite.

    Args:
      learning_rate: :math:`\Delta_0` (torch's ``lr``), the initial step size of every
        weight.
      etas: :math:`(\eta^-, \eta^+)`, the factors after a sign change and while it holds.
      step_sizes: :math:`(\Delta_{\min}, \Delta_{\max})`, the bounds of the step sizes.
      maximize: ascend the objective instead of descending it.
      variant: ``"irprop-"`` (torch's), ``"rprop-"``, ``"rprop+"`` or ``"irprop+"``.

    Returns:
      A :class:`~gradtx.GradientTransformation`: the chain above.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.rprop(learning_rate=0.1)  # torch.optim.Rprop(params, lr=0.1)
      >>> params = {"w": jnp.array([3.0, -2.0])}
      >>> state = tx.init(params)
      >>> for _ in range(50):
      ...     grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      ...     updates, state = tx.update(grads, state, params)
      ...     params = gradtx.apply_updates(params, updates)
      >>> print(jnp.abs(params["w"]).max() < 1e-3)
      True
    """
    check.flag("maximize", maximize)
    eta_minus, eta_plus = check.pair("etas", etas)
    min_step, max_step = check.pair("step_sizes", step_sizes)
    # checked here under the names the caller used; scale_by_rprop checks them again
    check.rprop_etas(("etas", "etas"), eta_minus, eta_plus)
    check.step_size_bounds(("step_sizes", "step_sizes"), min_step, max_step)
    rule = scale_by_rprop(
        learning_rate,
        eta_minus,
        eta_plus,
        min_step,
        max_step,
        variant=variant,
        accumulator_dtype=accumulator_dtype,
    )
    if maximize and variant == "irprop+":
        rule = negated_value(rule)
    blocks = [scale(-1.0)] if maximize else []
    blocks += [rule, scale(-1.0)]
    return chain(*blocks)


@other_spellings(_RMSPROP_SPELLINGS)
def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
    clamp_variance: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""RMSprop with ``torch.optim.RMSprop``'s arguments, defaults and numbers.

    The chain it builds (a block whose hyperparameter is a Python zero is left out; an
    array, as :func:`gradtx.inject_hyperparams` passes, always keeps its block)::

        chain(
            identity(),            # if maximize: the slot of scale(-1.0)
            identity(),            # if weight_decay: the slot of add_decayed_weights(wd)
            scale_by_stddev(alpha, eps, eps_in_sqrt=False,          # if centered
                            clamp_variance=clamp_variance, weight_decay=weight_decay,
                            maximize=maximize, accumulator_dtype=accumulator_dtype)
              or scale_by_rms(alpha, eps, eps_in_sqrt=False, weight_decay=weight_decay,
                              maximize=maximize, accumulator_dtype=accumulator_dtype),
            trace(momentum, accumulator_dtype=accumulator_dtype),  # if momentum
            scale_by_learning_rate(learning_rate),
        )

    The normaliser takes the sign and the L2 penalty itself (its ``maximize`` and
    ``weight_decay``: the same numbers, no temporary buffer for :math:`g + \lambda\theta`
    in the compiled step). The two ``identity()`` blocks keep the state, entry for entry,
    that of torch's RMSprop as separate blocks, ``chain(scale(-1.0),
    add_decayed_weights(weight_decay), scale_by_rms(alpha, eps, eps_in_sqrt=False), ...)``,
    whose numbers it gives bit for bit (``tests/test_rms.py``). A schedule for
    ``weight_decay`` needs a step count: those two slots are then ``scale(-1.0)`` and
    ``add_decayed_weights(weight_decay)`` themselves and the normaliser takes neither.

    The rule (Hinton 2012; centered: Graves 2013), with :math:`\gamma` =
    ``learning_rate``, :math:`\alpha`, :math:`\lambda` = ``weight_decay``, :math:`\mu` =
    ``momentum`` and :math:`v_0 = \bar g_0 = b_0 = 0`:

    Formula::

        g_t <- g_t + wd * theta_(t-1)                          (if weight_decay)
        v_t = alpha * v_(t-1) + (1 - alpha) * g_t**2
        m_t = alpha * m_(t-1) + (1 - alpha) * g_t               (if centered)
        v~_t = v_t - m_t**2   if centered,   else v_t
        b_t = momentum * b_(t-1) + g_t / (sqrt(v~_t) + eps)
        theta_t = theta_(t-1) - lr * b_t

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t \text{ (centered)}, \\
        \tilde v_t = v_t - \bar g_t^2 \text{ (centered) else } v_t, \quad
        b_t = \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \quad
        \theta_t = \theta_{t-1} - \gamma\, b_t .

    Matches torch to rounding (tests: ``tests/test_aliases.py``). Validation follows
    torch: ``learning_rate``, ``alpha``, ``eps``, ``weight_decay`` and ``momentum`` must be
    ``>= 0`` (and, in gradtx, finite); gradtx also requires ``alpha <= 1``.

    ``clamp_variance`` (centered only; off by default, for parity with torch and optax):
    in floating point :math:`v_t - \bar g_t^2` can cancel to a tiny negative number, and
    its square root is NaN; with ``clamp_variance=True`` it is clamped at 0 first, so the
    step is :math:`g_t/\epsilon`-bounded instead of NaN. Asking for it without
    ``centered=True`` raises ``ValueError`` (plain RMSprop's :math:`v_t` cannot be negative).

    ``accumulator_dtype`` (default ``None``: the param's dtype) is the dtype of the
    per-parameter state :math:`v, \bar g, b`: ``jnp.float32`` keeps bfloat16 or float16
    params' averages in float32 (optax's name, from ``optax.trace``). The averages are
    then computed in float32 and each update still leaves in the param's dtype.

    Args:
      learning_rate: :math:`\gamma` (torch's ``lr``), a number ``>= 0`` or a schedule.
      alpha: :math:`\alpha`, the decay of the averages, in ``[0, 1]``.
      eps: :math:`\epsilon`, added to the root (``>= 0``).
      weight_decay: :math:`\lambda`, an L2 penalty added to the gradient (``>= 0``).
      momentum: :math:`\mu` (``>= 0``; 0: no momentum buffer).
      centered: divide by the estimated standard deviation instead of the RMS.
      maximize: ascend the objective instead of descending it.
      clamp_variance: with ``centered``, clamp :math:`\tilde v_t` at 0.
      accumulator_dtype: the dtype of :math:`v, \bar g, b` (``None``: the param's).

    Returns:
      A :class:`~gradtx.GradientTransformation`: the chain above, whose state is the
      tuple of its blocks' states.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.rmsprop(learning_rate=1e-2, momentum=0.9, centered=True)
      >>> params = {"w": jnp.array([1.0, -1.0])}
      >>> state = tx.init(params)
      >>> for _ in range(100):
      ...     grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      ...     updates, state = tx.update(grads, state, params)
      ...     params = gradtx.apply_updates(params, updates)
      >>> print(jnp.abs(params["w"]).max() < 0.1)
      True
    """
    for name, value in [
        ("centered", centered),
        ("maximize", maximize),
        ("clamp_variance", clamp_variance),
    ]:
        check.flag(name, value)
    if clamp_variance and not centered:
        raise ValueError(
            f"Invalid clamp_variance: {clamp_variance!r} (applies to centered=True only)."
        )
    for name, value in [
        ("learning_rate", learning_rate),
        ("eps", eps),
        ("weight_decay", weight_decay),
        ("momentum", momentum),
    ]:
        check.non_negative(name, value)
    check.in_range("alpha", alpha, 0.0, 1.0)
    # A schedule keeps its blocks; otherwise the sign and the decay are the
    # normaliser's, and identity() holds their blocks' slots in the state.
    scheduled = callable(weight_decay)
    decays = scheduled or not (check.is_python_number(weight_decay) and weight_decay == 0)
    blocks = [scale(-1.0) if scheduled else identity()] if maximize else []
    if decays:
        blocks.append(add_decayed_weights(weight_decay) if scheduled else identity())
    common = dict(decay=alpha, eps=eps, eps_in_sqrt=False, accumulator_dtype=accumulator_dtype)
    if not scheduled:
        common |= dict(weight_decay=weight_decay if decays else None, maximize=maximize)
    if centered:
        blocks.append(scale_by_stddev(clamp_variance=clamp_variance, **common))
    else:
        blocks.append(scale_by_rms(**common))
    if not (check.is_python_number(momentum) and momentum == 0):
        blocks.append(trace(decay=momentum, accumulator_dtype=accumulator_dtype))
    blocks.append(scale_by_learning_rate(learning_rate))
    return chain(*blocks)
