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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradtx import _validation as check
from gradtx._base import GradientTransformation, safe_increment
from gradtx._leafwise import counter, leafwise
from gradtx._numerics import one_minus_power


class ScaleByRmsState(NamedTuple):
    r"""The state of :func:`scale_by_rms` (without bias correction).

    Attributes:
      nu: the moving average of the squared gradients, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.scale_by_rms().init({"w": jnp.zeros(2)})
      ScaleByRmsState(nu={'w': Array([0., 0.], dtype=float32)})
    """

    nu: Any  # EMA of g**2, mirrors params


class ScaleByRmsWithCountState(NamedTuple):
    r"""The state of :func:`scale_by_rms` with ``bias_correction=True``.

    Attributes:
      count: an ``int32`` scalar, the updates made so far (for the bias correction).
      nu: the moving average of the squared gradients, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.scale_by_rms(bias_correction=True).init({"w": jnp.zeros(2)})
      ScaleByRmsWithCountState(count=Array(0, dtype=int32),
                                 nu={'w': Array([0., 0.], dtype=float32)})
    """

    count: jax.Array  # int32 scalar, updates made so far
    nu: Any


class ScaleByRStdDevState(NamedTuple):
    r"""The state of :func:`scale_by_stddev` (without bias correction).

    Attributes:
      mu: the moving average of the gradients, like the params.
      nu: the moving average of the squared gradients, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.scale_by_stddev().init({"w": jnp.zeros(2)})
      ScaleByRStdDevState(mu={'w': Array([0., 0.], dtype=float32)},
                            nu={'w': Array([0., 0.], dtype=float32)})
    """

    mu: Any  # EMA of g, mirrors params
    nu: Any  # EMA of g**2, mirrors params


class ScaleByRStdDevWithCountState(NamedTuple):
    r"""The state of :func:`scale_by_stddev` with ``bias_correction=True``.

    Attributes:
      count: an ``int32`` scalar, the updates made so far (for the bias correction).
      mu: the moving average of the gradients, like the params.
      nu: the moving average of the squared gradients, like the params.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.scale_by_stddev(bias_correction=True).init({"w": jnp.zeros(2)})
      ScaleByRStdDevWithCountState(count=Array(0, dtype=int32),
                                     mu={'w': Array([0., 0.], dtype=float32)},
                                     nu={'w': Array([0., 0.], dtype=float32)})
    """

    count: jax.Array
    mu: Any
    nu: Any


def _check(decay, eps, initial_scale, **flags) -> None:
    for name, value in flags.items():
        check.flag(name, value)
    check.in_range("decay", decay, 0.0, 1.0)
    check.non_negative("eps", eps)
    check.non_negative("initial_scale", initial_scale)


def _ema_sq(decay, nu, g):
    """:math:`\\nu \\leftarrow (1-\\beta)\\,g^2 + \\beta\\,\\nu`, written so that XLA fuses it into
    the same multiply-add as torch's ``addcmul``: :math:`((1-\\beta) g)\\cdot g + \\beta\\nu`
    with one rounding for the last multiply and the add, :math:`\\beta\\nu` rounded first;
    it then rounds exactly as torch does.

    Written as a difference: of ``a*b + c*d`` LLVM may fuse either product into the add
    (it fused :math:`\\beta\\nu` where the gradient was widened from bfloat16, or computed
    in the same loop from :math:`g + \\lambda\\theta`); ``a*b - (-c)*d`` fuses its first
    operand's product in every loop measured with :math:`\\beta` a constant. With
    :math:`\\beta` traced (``inject_hyperparams``) LLVM fused :math:`\\beta\\nu` in both
    forms: one rounding of :math:`\\nu` from torch's there. Without FMA
    (``--xla_cpu_max_isa=SSE4_2``) all are the same two roundings."""
    return ((1 - decay) * g) * g - (-decay) * nu


def _lerp(moment, x, decay):
    """The same average written as torch's ``lerp``: :math:`m + w\\,(x - m)`, :math:`w =
    1-\\beta` (or :math:`x - (x - m)(1 - w)` when :math:`w \\ge 1/2`), which rounds
    exactly as ``torch.optim.RMSprop(centered=True)`` does."""
    w = 1 - decay
    if isinstance(w, float):
        return moment + w * (x - moment) if w < 0.5 else x - (x - moment) * (1 - w)
    return jnp.where(w < 0.5, moment + w * (x - moment), x - (x - moment) * (1 - w))


def _wider(dtype, acc_dtype):
    """The wider of a gradient's dtype and the state's: an average kept in a wider
    ``accumulator_dtype`` is computed in it."""
    return jnp.promote_types(dtype, acc_dtype)


def _normalise(g, var, eps, eps_in_sqrt):
    """:math:`g / \\sqrt{v + \\epsilon}` or :math:`g / (\\sqrt{v} + \\epsilon)`."""
    if eps_in_sqrt:
        return g * jax.lax.rsqrt(var + eps)
    return g / (jnp.sqrt(var) + eps)


class L2Penalty(NamedTuple):
    r"""An L2 penalty computed inside a normaliser's rule: the normaliser's input is
    :math:`\pm g + \lambda\theta` (``negate``: :math:`-g`, an ascent) instead of
    :math:`g`. The same numbers as ``add_decayed_weights`` (after ``scale(-1)``) chained
    before the normaliser; what differs is the compiled step, see :func:`_inputs_of`."""

    weight_decay: Any  # lambda: a number, or an array (traced under inject_hyperparams)
    negate: bool = False


def _inputs_of(penalty: L2Penalty | None):
    r"""The normaliser's two uses of its input, in the averages' dtype (:func:`_wider`):
    the one its averages take in and the one its update divides. Without a penalty both
    are the gradient. With one, both are
    :math:`\pm g + \lambda\theta`, the second computed again from :math:`g` and
    :math:`\theta` behind ``lax.optimization_barrier``.

    Why twice: one value feeding the averages' loops and the update's loop (which also
    reads the new averages) is written by XLA (CPU) to a temporary buffer, 4 bytes per
    param allocated at every step. Two values computed alike from the step's inputs
    fuse each into its own loop instead (the barrier keeps XLA from merging them back):
    the same numbers, one kernel fewer, no temporary. Not where the averages are kept in a
    wider dtype than the param (``accumulator_dtype``): there the penalised gradient must
    be rounded to the param's dtype before it is widened, and only a stored value is
    sure to be (XLA computes a bfloat16 expression in float32 inside a loop and may skip
    that rounding, even in the chain of blocks under ``jit``), so it is computed once
    and stored (behind the barrier): jitted or eager, the numbers of the blocks run
    eagerly.

    ``inputs(g, acc_dtype, p=, wd=)``: ``p`` is the param and ``wd`` :math:`\lambda`,
    passed as a rule argument so that a traced value works."""
    if penalty is None:

        def inputs(g, acc_dtype):
            g = g.astype(_wider(g.dtype, acc_dtype))
            return g, g

        return inputs

    def penalised(g, p, wd):
        return (-g if penalty.negate else g) + wd * p

    def inputs(g, acc_dtype, *, p, wd):
        wide = _wider(g.dtype, acc_dtype)
        if wide != g.dtype:
            stored = jax.lax.optimization_barrier(penalised(g, p, wd)).astype(wide)
            return stored, stored
        return penalised(g, p, wd), penalised(*jax.lax.optimization_barrier((g, p)), wd)

    return inputs


def _lifted(update_leaf, penalty: L2Penalty | None, **engine_args) -> GradientTransformation:
    r""":func:`leafwise` on a normaliser's rule, handing it the param and :math:`\lambda`
    when it carries a penalty."""
    if penalty is None:
        return leafwise(update_leaf, **engine_args)
    rule = functools.partial(update_leaf, wd=penalty.weight_decay)
    return leafwise(rule, with_params=True, **engine_args)


def _bias_correction(decay, bias_correction):
    """The ``count`` of the counted states, handing every leaf :math:`1 / (1 - \\beta^t)` at
    the new count :math:`t` (a reciprocal, multiplied: XLA turns a division by a scalar
    into that multiplication in some programs and not in others, so dividing would round
    differently eagerly and under ``jit``); ``None`` without bias correction."""
    if not bias_correction:
        return None
    return counter(lambda count: {"correction": 1 / one_minus_power(decay, safe_increment(count))})


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
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

    Args:
      decay: :math:`\beta`, in ``[0, 1]``.
      eps: :math:`\epsilon` (``>= 0``).
      initial_scale: :math:`\nu_0` (``>= 0``).
      eps_in_sqrt: add :math:`\epsilon` inside the root (optax's default) or outside it
        (torch's RMSprop).
      bias_correction: divide :math:`\nu_t` by :math:`1-\beta^t`.
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
    _check(decay, eps, initial_scale, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction)
    return _scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, accumulator_dtype)


def _scale_by_rms(
    decay, eps, initial_scale, eps_in_sqrt, bias_correction, accumulator_dtype, penalty=None
) -> GradientTransformation:
    """:func:`scale_by_rms` from checked arguments, with an optional :class:`L2Penalty`."""
    acc_dtype = check.float_dtype("accumulator_dtype", accumulator_dtype)
    counted = bias_correction
    inputs = _inputs_of(penalty)

    def init_leaf(p):
        return (jnp.full_like(p, initial_scale, dtype=acc_dtype),)

    def update_leaf(g, nu, correction=1.0, **given):
        g, g_out = inputs(g, nu.dtype, **given)
        nu = _ema_sq(decay, nu, g)
        nu_hat = nu * jnp.asarray(correction, nu.dtype) if counted else nu
        return _normalise(g_out, nu_hat, eps, eps_in_sqrt), (nu,)

    return _lifted(
        update_leaf,
        penalty,
        state=ScaleByRmsWithCountState if counted else ScaleByRmsState,
        init_leaf=init_leaf,
        scalars=_bias_correction(decay, counted),
    )


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    clamp_variance: bool = False,
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

    Args:
      decay: :math:`\beta`, in ``[0, 1]``.
      eps: :math:`\epsilon` (``>= 0``).
      initial_scale: :math:`\nu_0` (``>= 0``).
      eps_in_sqrt: add :math:`\epsilon` inside the root (optax's default) or outside it
        (torch's RMSprop).
      bias_correction: divide both moments by :math:`1-\beta^t`.
      clamp_variance: clamp :math:`\hat\nu_t - \hat\mu_t^2` at 0.
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
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        clamp_variance=clamp_variance,
    )
    return _scale_by_stddev(
        decay, eps, initial_scale, eps_in_sqrt, bias_correction, clamp_variance, accumulator_dtype
    )


def _scale_by_stddev(
    decay,
    eps,
    initial_scale,
    eps_in_sqrt,
    bias_correction,
    clamp_variance,
    accumulator_dtype,
    penalty=None,
) -> GradientTransformation:
    """:func:`scale_by_stddev` from checked arguments, with an optional :class:`L2Penalty`."""
    acc_dtype = check.float_dtype("accumulator_dtype", accumulator_dtype)
    counted = bias_correction
    inputs = _inputs_of(penalty)

    def init_leaf(p):
        return jnp.zeros_like(p, dtype=acc_dtype), jnp.full_like(p, initial_scale, dtype=acc_dtype)

    def update_leaf(g, mu, nu, correction=1.0, **given):
        g, g_out = inputs(g, nu.dtype, **given)
        mu = _lerp(mu, g, decay)
        nu = _ema_sq(decay, nu, g)
        if counted:
            c = jnp.asarray(correction, nu.dtype)
            mu_hat, nu_hat = mu * c, nu * c
        else:
            mu_hat, nu_hat = mu, nu
        var = nu_hat - mu_hat * mu_hat
        if clamp_variance:
            var = jnp.maximum(var, 0)
        return _normalise(g_out, var, eps, eps_in_sqrt), (mu, nu)

    return _lifted(
        update_leaf,
        penalty,
        state=ScaleByRStdDevWithCountState if counted else ScaleByRStdDevState,
        init_leaf=init_leaf,
        scalars=_bias_correction(decay, counted),
    )
