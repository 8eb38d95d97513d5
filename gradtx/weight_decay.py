"""Weight decay added to the gradient (the coupled, L2 form of torch.optim and optax)."""

from __future__ import annotations

from typing import NamedTuple

import jax

from gradtx import _validation as check
from gradtx._base import EmptyState, GradientTransformation, ScalarOrSchedule, leafwise


class WeightDecayScheduleState(NamedTuple):
    count: jax.Array  # int32 scalar


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0) -> GradientTransformation:
    r"""Add the params, scaled: :math:`u_t = g_t + \lambda\,\theta_{t-1}`.

    :math:`\lambda` = ``weight_decay`` is a scalar or a schedule of the step count.
    Placed before a normaliser (as in ``torch.optim.RMSprop(weight_decay=...)``) this is
    an L2 penalty; placed after it, decoupled weight decay. Needs ``params``.
    Same arguments, defaults and numbers as ``optax.add_decayed_weights``.
    """
    check.non_negative("weight_decay", weight_decay)

    def update_leaf(g, *, p, wd=weight_decay):
        return g + wd * p, ()

    if callable(weight_decay):
        return leafwise(
            update_leaf,
            state=WeightDecayScheduleState,
            per_step=lambda count: {"wd": weight_decay(count)},
            with_params=True,
        )
    return leafwise(update_leaf, state=EmptyState, with_params=True)
