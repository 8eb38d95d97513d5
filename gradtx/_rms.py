"""RMSprop's normalisers: divide by a running root mean square of the gradients.

``scale_by_rms`` keeps :math:`\\nu`, an exponential moving average of :math:`g^2`;
``scale_by_stddev`` (the *centered* form of Graves, 2013) also keeps :math:`\\mu`,
the moving average of :math:`g`, and divides by the running standard deviation
:math:`\\sqrt{\\nu - \\mu^2}` instead.

Both take optax's arguments with optax's defaults (``decay=0.9, eps=1e-8,
initial_scale=0.0, eps_in_sqrt=True, bias_correction=False``) and match
``optax.scale_by_rms`` / ``optax.scale_by_stddev`` numerically. ``torch.optim.RMSprop``
is ``decay=alpha, eps_in_sqrt=False``. With ``eps_in_sqrt=False`` we divide by
:math:`\\sqrt{\\nu}+\\epsilon` as torch does, where optax multiplies by its reciprocal;
the two differ by at most one rounding.

``accumulator_dtype`` (as in ``optax.trace``) keeps :math:`\\nu` and :math:`\\mu` in a
wider dtype than the params, e.g. float32 state for bfloat16 params: the averages are
then taken in that dtype (the gradient is widened first) and the update leaves in the
param's dtype. ``None`` (the default) keeps the state in the param's dtype.

Complex gradients are treated as pairs of real numbers (torch's convention): the real
and imaginary parts each get their own :math:`\\nu`. optax instead averages
:math:`|g|^2`, so for complex params the two libraries differ.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation
from gradtx._leafwise import leafwise
from gradtx._rms_math import bias_correction as _counted
from gradtx._rms_math import ema_sq, inputs_of, lerp, normalise
from gradtx._rms_states import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
)


def _check(decay, eps, initial_scale, weight_decay, **flags) -> None:
    for name, value in flags.items():
        check.flag(name, value)
    check.in_range("decay", decay, 0.0, 1.0)
    check.non_negative("eps", eps)
    check.non_negative("initial_scale", initial_scale)
    if callable(weight_decay):
        raise TypeError(
            f"Invalid weight_decay: {weight_decay!r} (a normaliser takes a number or an "
            "array; for a schedule chain gradtx.add_decayed_weights(schedule) before it)."
        )
    if weight_decay is not None:
        check.non_negative("weight_decay", weight_decay)


def _decays(weight_decay) -> bool:
    """A penalty unless ``None`` or a Python zero. An array (``inject_hyperparams``
    passes one) always has one, so the transform does not depend on its value."""
    return weight_decay is not None and not (
        check.is_python_number(weight_decay) and weight_decay == 0
    )


def _normaliser(name, rule, state, init_leaf, decay, bias_correction, weight_decay):
    """The transform of a normaliser's ``rule(g, *averages, correction=, p=, wd=)``."""
    decays = _decays(weight_decay)
    if decays:  # the param and lambda, a rule argument so that a traced value works
        rule = functools.partial(rule, wd=weight_decay)
    tx = leafwise(
        rule,
        state=state,
        init_leaf=init_leaf,
        scalars=_counted(decay, bias_correction),
        with_params=decays,
    )
    return tx


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    weight_decay: Any | None = None,
    maximize: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Divide updates by the root of an exponential moving average of their squares.

    Formula::

        nu_t = decay * nu_(t-1) + (1 - decay) * g_t**2           nu_0 = initial_scale
        nu^_t = nu_t / (1 - decay**t)   if bias_correction,   else nu_t
        u_t = g_t / sqrt(nu^_t + eps)     if eps_in_sqrt
        u_t = g_t / (sqrt(nu^_t) + eps)   otherwise (torch's RMSprop)

    .. math::
        \nu_t = \beta\,\nu_{t-1} + (1-\beta)\,g_t^2, \qquad
        \hat\nu_t = \nu_t / (1-\beta^t) \text{ if bias_correction else } \nu_t, \\
        u_t = g_t / \sqrt{\hat\nu_t + \epsilon} \text{ (eps_in_sqrt)} \quad\text{or}\quad
        u_t = g_t / (\sqrt{\hat\nu_t} + \epsilon),

    with :math:`\beta` = ``decay`` and :math:`\nu_0` = ``initial_scale``. Same arguments,
    defaults and numbers as ``optax.scale_by_rms`` (optax 0.2.8), which has no
    ``accumulator_dtype``. A complex leaf is normalised as two reals (torch's convention).

    **The input.** With ``weight_decay`` :math:`\lambda` or ``maximize`` the normaliser
    takes :math:`\pm g + \lambda\theta` for :math:`g` (an L2 penalty, and :math:`-g`
    to ascend; ``update`` then needs the params when :math:`\lambda \ne 0`): the numbers
    of ``chain(scale(-1.0), add_decayed_weights(weight_decay), scale_by_rms(...))`` run
    eagerly, bit for bit, jitted or not, with this block's own state. They are computed
    in the normaliser's own loops, so that the compiled step keeps no temporary buffer
    for the input (docs/performance.md). :func:`gradtx.rmsprop` uses
    it. A schedule for the decay needs its own block: chain
    :func:`gradtx.add_decayed_weights` before the normaliser.

    **Bias correction.** :math:`1-\beta^t` is computed as
    :math:`-\operatorname{expm1}(t\log\beta)` (the logarithm of a Python
    :math:`\beta` in float64): the same number eagerly and under ``jit``, and at
    :math:`\beta` = 0.999 within 3.3e-7 relative of exact in float32. optax computes
    ``1 - decay**t``, which cancels (up to 2e-5 relative off there): the two differ by
    that much, enough to fail optax's own ``test_rms_match_adam`` at rtol 1e-6
    (docs/numerics.md). :math:`\beta = 0` is valid: :math:`1-0^t = 1`.

    Args:
      decay: :math:`\beta`, in ``[0, 1]``.
      eps: :math:`\epsilon` (``>= 0``).
      initial_scale: :math:`\nu_0` (``>= 0``).
      eps_in_sqrt: add :math:`\epsilon` inside the root (optax's default) or outside it
        (torch's RMSprop).
      bias_correction: divide :math:`\nu_t` by :math:`1-\beta^t`.
      weight_decay: :math:`\lambda` (``>= 0``, a number or an array), added as
        :math:`\lambda\theta` to the input (above); ``None`` (not injected by
        :func:`gradtx.inject_hyperparams`) or 0: none.
      maximize: normalise :math:`-g` (ascend), as ``scale(-1.0)`` before it would.
      accumulator_dtype: the dtype of :math:`\nu` (``None``: the param's); the update keeps
        the param's dtype.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a :class:`ScaleByRmsState`
      (a :class:`ScaleByRmsWithCountState` with ``bias_correction``).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale_by_rms(decay=0.99, eps_in_sqrt=False)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -2.0])}, tx.init({"w": jnp.zeros(2)}))
      >>> print(updates["w"].round(4))  # first step: g / sqrt(0.01 g**2) = 10 sign(g)
      [ 10. -10.]

      bfloat16 params with a float32 average:

      >>> tx = gradtx.scale_by_rms(accumulator_dtype=jnp.float32)
      >>> tx.init({"w": jnp.ones(2, jnp.bfloat16)}).nu["w"].dtype
      dtype('float32')
    """
    _check(
        decay,
        eps,
        initial_scale,
        weight_decay,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        maximize=maximize,
    )
    acc_dtype = check.accumulator_dtype("accumulator_dtype", accumulator_dtype)
    inputs = inputs_of(_decays(weight_decay), maximize)

    def init_leaf(p):
        return (jnp.full_like(p, initial_scale, dtype=acc_dtype),)

    def update_leaf(g, nu, correction=1.0, **given):
        g_sq, _, g_out = inputs(g, nu.dtype, **given)
        nu = ema_sq(decay, nu, g_sq)
        nu_hat = nu * jnp.asarray(correction, nu.dtype) if bias_correction else nu
        return normalise(g_out, nu_hat, eps, eps_in_sqrt), (nu,)

    state = ScaleByRmsWithCountState if bias_correction else ScaleByRmsState
    args = (decay, bias_correction, weight_decay)
    return _normaliser("scale_by_rms", update_leaf, state, init_leaf, *args)


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    clamp_variance: bool = False,
    weight_decay: Any | None = None,
    maximize: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Divide updates by a running estimate of their standard deviation (centered RMSprop).

    Formula::

        mu_t = decay * mu_(t-1) + (1 - decay) * g_t              mu_0 = 0
        nu_t = decay * nu_(t-1) + (1 - decay) * g_t**2           nu_0 = initial_scale
        u_t = g_t / sqrt(nu^_t - mu^_t**2 + eps)      if eps_in_sqrt
        u_t = g_t / (sqrt(nu^_t - mu^_t**2) + eps)    otherwise (torch's centered RMSprop)

    .. math::
        \mu_t = \beta\,\mu_{t-1} + (1-\beta)\,g_t, \qquad
        \nu_t = \beta\,\nu_{t-1} + (1-\beta)\,g_t^2, \\
        u_t = g_t / \sqrt{\hat\nu_t - \hat\mu_t^2 + \epsilon} \text{ (eps_in_sqrt)}
        \quad\text{or}\quad u_t = g_t / (\sqrt{\hat\nu_t - \hat\mu_t^2} + \epsilon),

    with hats the bias-corrected moments when ``bias_correction`` (else the moments),
    :math:`\mu_0 = 0` and :math:`\nu_0` = ``initial_scale``. Same arguments, defaults and
    numbers as ``optax.scale_by_stddev`` (optax 0.2.8); ``torch.optim.RMSprop(centered=True)``
    is ``decay=alpha, eps_in_sqrt=False``.

    In floating point :math:`\nu - \mu^2` can cancel to a tiny negative number, whose square
    root is NaN (torch and optax both let that happen); ``clamp_variance=True`` (off by
    default, for parity) clamps the variance at zero first.

    **The input.** With ``weight_decay`` :math:`\lambda` or ``maximize`` the normaliser
    takes :math:`\pm g + \lambda\theta` for :math:`g` (an L2 penalty, and :math:`-g`
    to ascend; ``update`` then needs the params when :math:`\lambda \ne 0`): the numbers
    of ``chain(scale(-1.0), add_decayed_weights(weight_decay), scale_by_stddev(...))`` run
    eagerly, bit for bit, jitted or not, with this block's own state. They are computed
    in the normaliser's own loops, so that the compiled step keeps no temporary buffer
    for the input (docs/performance.md). :func:`gradtx.rmsprop` uses
    it. A schedule for the decay needs its own block: chain
    :func:`gradtx.add_decayed_weights` before the normaliser.

    **Bias correction.** :math:`1-\beta^t` is computed as
    :math:`-\operatorname{expm1}(t\log\beta)` (the logarithm of a Python
    :math:`\beta` in float64): the same number eagerly and under ``jit``, and at
    :math:`\beta` = 0.999 within 3.3e-7 relative of exact in float32. optax computes
    ``1 - decay**t``, which cancels (up to 2e-5 relative off there): the two differ by
    that much, enough to fail optax's own ``test_rms_match_adam`` at rtol 1e-6
    (docs/numerics.md). :math:`\beta = 0` is valid: :math:`1-0^t = 1`.

    Args:
      decay: :math:`\beta`, in ``[0, 1]``.
      eps: :math:`\epsilon` (``>= 0``).
      initial_scale: :math:`\nu_0` (``>= 0``).
      eps_in_sqrt: add :math:`\epsilon` inside the root (optax's default) or outside it
        (torch's RMSprop).
      bias_correction: divide both moments by :math:`1-\beta^t`.
      clamp_variance: clamp :math:`\hat\nu_t - \hat\mu_t^2` at 0.
      weight_decay: :math:`\lambda` (``>= 0``, a number or an array), added as
        :math:`\lambda\theta` to the input (above); ``None`` (not injected by
        :func:`gradtx.inject_hyperparams`) or 0: none.
      maximize: normalise :math:`-g` (ascend), as ``scale(-1.0)`` before it would.
      accumulator_dtype: the dtype of :math:`\mu` and :math:`\nu` (``None``: the param's);
        the update keeps the param's dtype.

    Returns:
      A :class:`~gradtx.GradientTransformation` whose state is a
      :class:`ScaleByRStdDevState` (a :class:`ScaleByRStdDevWithCountState` with
      ``bias_correction``).

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.scale_by_stddev(decay=0.5, eps=0.0)
      >>> state = tx.init({"w": jnp.zeros(1)})
      >>> for g in (1.0, 3.0):
      ...     updates, state = tx.update({"w": jnp.array([g])}, state)
      ...     print(updates["w"])
      [2.]
      [2.309401]
    """
    _check(
        decay,
        eps,
        initial_scale,
        weight_decay,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        clamp_variance=clamp_variance,
        maximize=maximize,
    )
    acc_dtype = check.accumulator_dtype("accumulator_dtype", accumulator_dtype)
    inputs = inputs_of(_decays(weight_decay), maximize)

    def init_leaf(p):
        return jnp.zeros_like(p, dtype=acc_dtype), jnp.full_like(p, initial_scale, dtype=acc_dtype)

    def update_leaf(g, mu, nu, correction=1.0, **given):
        g_sq, g_in, g_out = inputs(g, nu.dtype, **given)
        mu, nu = lerp(mu, g_in, decay), ema_sq(decay, nu, g_sq)
        c = jnp.asarray(correction, nu.dtype)
        mu_hat, nu_hat = (mu * c, nu * c) if bias_correction else (mu, nu)
        var = nu_hat - mu_hat * mu_hat
        if clamp_variance:
            var = jnp.maximum(var, 0)
        return normalise(g_out, var, eps, eps_in_sqrt), (mu, nu)

    state = ScaleByRStdDevWithCountState if bias_correction else ScaleByRStdDevState
    args = (decay, bias_correction, weight_decay)
    return _normaliser("scale_by_stddev", update_leaf, state, init_leaf, *args)
