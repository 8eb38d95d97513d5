"""gradtx: pure-functional gradient transformations for JAX: Rprop, RMSprop and the
small composable blocks they are made of.

Everything public is exported here; the modules behind it are private.
"""

from gradtx._base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    identity,
)
from gradtx.aliases import rmsprop, rprop
from gradtx.clipping import (
    clip,
    clip_by_block_norm,
    clip_by_block_rms,
    clip_by_global_norm,
    global_norm,
)
from gradtx.combine import chain
from gradtx.momentum import TraceState, trace
from gradtx.rms import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    scale_by_rms,
    scale_by_stddev,
)
from gradtx.rprop import ScaleByRpropState, scale_by_rprop
from gradtx.scaling import ScaleByScheduleState, scale, scale_by_learning_rate, scale_by_schedule
from gradtx.weight_decay import WeightDecayScheduleState, add_decayed_weights

__version__ = "0.1.0"

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRpropState",
    "ScaleByScheduleState",
    "Schedule",
    "TraceState",
    "Updates",
    "WeightDecayScheduleState",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_block_norm",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "global_norm",
    "identity",
    "rmsprop",
    "rprop",
    "scale",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_schedule",
    "scale_by_stddev",
    "trace",
]
