r"""Weight decay: the params, scaled, added to the update.

One block, two meanings, decided by where it sits in a chain:

* **coupled (L2 penalty)**: before the normaliser, as ``torch.optim.RMSprop(weight_decay=λ)``
  and gradtx's ``rmsprop(weight_decay=λ)`` do. The decay is the gradient of
  :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` and is normalised with the rest:
  ``chain(add_decayed_weights(λ), scale_by_rms(...), scale_by_learning_rate(γ))``,
  :math:`\theta_t = \theta_{t-1} - \gamma\,(g_t + \lambda\theta_{t-1})/(\sqrt{v_t}+\epsilon)`.
* **decoupled** (Loshchilov & Hutter, "Decoupled weight decay regularization", 2019;
  torch's ``AdamW``, optax's ``adamw``): after the normaliser, so every weight decays by
  the same fraction :math:`\gamma\lambda` whatever its gradient history:
  ``chain(scale_by_rms(...), add_decayed_weights(λ), scale_by_learning_rate(γ))``,
  :math:`\theta_t = \theta_{t-1} - \gamma\,(g_t/(\sqrt{v_t}+\epsilon) + \lambda\theta_{t-1})`.
  (torch's AdamW multiplies :math:`\lambda` by the learning rate the same way.)

``mask`` restricts either form to some params, e.g. weights but not biases.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax

from gradtx import _validation as check
from gradtx._base import GradientTransformation, ScalarOrSchedule
from gradtx._leafwise import counter, leafwise
from gradtx._masking import masked


class WeightDecayScheduleState(NamedTuple):
    r"""The state of :func:`add_decayed_weights` with a scheduled decay: the update count.

    Attributes:
      count: an ``int32`` scalar, 0 before the first update.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> gradtx.add_decayed_weights(lambda t: 1e-4).init({"w": jnp.zeros(2)})
      WeightDecayScheduleState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # int32 scalar


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any | None = None
) -> GradientTransformation:
    r"""Add the params, scaled by the weight decay, to the updates.

    Formula::

        u_t = g_t + wd * theta_(t-1)

    .. math:: u_t = g_t + \lambda\,\theta_{t-1}, \qquad \lambda = \texttt{weight\_decay}

    Placed before a normaliser (as in ``torch.optim.RMSprop(weight_decay=...)``) this is an
    L2 penalty; placed after it, decoupled weight decay (see the module docstring). Needs
    ``params``. Same arguments, defaults and numbers as ``optax.add_decayed_weights``.

    Args:
      weight_decay: :math:`\lambda`, a number ``>= 0`` or a schedule of the step count.
      mask: a pytree of bools like the params, or a function ``params -> mask``: only the
        leaves where it is True decay, the others pass unchanged and keep no state
        (:func:`gradtx.masked`). ``None``: every leaf.

    Returns:
      A :class:`~gradtx.GradientTransformation`, stateless for a number, with a
      :class:`WeightDecayScheduleState` for a schedule.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.add_decayed_weights(0.1, mask={"w": True, "b": False})
      >>> params = {"w": jnp.array([2.0]), "b": jnp.array([2.0])}
      >>> grads = {"w": jnp.array([1.0]), "b": jnp.array([1.0])}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates["w"], updates["b"])
      [1.2] [1.]
    """
    check.non_negative("weight_decay", weight_decay)
    if mask is not None:
        return masked(add_decayed_weights(weight_decay), mask)

    def decay(g, *, p, wd):
        return g + wd * p, ()

    if callable(weight_decay):
        weight_decay = check.schedule("weight_decay", weight_decay, check.non_negative)
        return leafwise(
            decay,
            state=WeightDecayScheduleState,
            scalars=counter(lambda count: {"wd": weight_decay(count)}),
            with_params=True,
        )
    return leafwise(functools.partial(decay, wd=weight_decay), with_params=True)
