"""gradtx: pure-functional gradient transformations for JAX: Rprop, RMSprop and the
small composable blocks they are made of.

Everything public is exported here; the modules behind it are private.
"""

from gradtx._accumulation import MultiSteps, MultiStepsState, skip_not_finite
from gradtx._aliases import rmsprop, rprop
from gradtx._apply_every import ApplyEvery, apply_every
from gradtx._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    apply_updates,
    identity,
)
from gradtx._checkpoint import restore_checkpoint, save_checkpoint
from gradtx._clipping import (
    clip,
    clip_by_block_norm,
    clip_by_block_rms,
    clip_by_global_norm,
    global_norm,
)
from gradtx._combine import PartitionState, chain, multi_transform, named_chain, partition
from gradtx._ema import EmaState, ema
from gradtx._flatten import flatten
from gradtx._inject import InjectHyperparamsState, inject_hyperparams, set_hyperparams
from gradtx._join import JoinTransformsState, join_transforms
from gradtx._masking import MaskedNode, MaskedState, masked
from gradtx._momentum import TraceState, trace
from gradtx._rms import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    scale_by_rms,
    scale_by_stddev,
)
from gradtx._rprop import RPROP_VARIANTS, RpropVariant, scale_by_rprop
from gradtx._rprop._state import (
    ScaleByIRpropPlusPackedState,
    ScaleByIRpropPlusState,
    ScaleByRpropPackedState,
    ScaleByRpropPlusPackedState,
    ScaleByRpropState,
    rprop_prev_signs,
    rprop_step_sizes,
)
from gradtx._scaling import ScaleByScheduleState, scale, scale_by_learning_rate, scale_by_schedule
from gradtx._schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    polynomial_schedule,
)
from gradtx._schedules_cyclic import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_interpolate_schedule,
    sgdr_schedule,
    warmup_exponential_decay_schedule,
)
from gradtx._schedules_joined import (
    join_schedules,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
)
from gradtx._weight_decay import WeightDecayScheduleState, add_decayed_weights
from gradtx._wrappers import ApplyIfFiniteState, apply_if_finite
from gradtx._zeroing import ZeroNansState, set_to_zero, zero_nans

__version__ = "0.1.0"

__all__ = [
    "RPROP_VARIANTS",
    "ApplyEvery",
    "ApplyIfFiniteState",
    "EmaState",
    "EmptyState",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "InjectHyperparamsState",
    "JoinTransformsState",
    "MaskedNode",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "OptState",
    "Params",
    "PartitionState",
    "RpropVariant",
    "ScalarOrSchedule",
    "ScaleByIRpropPlusPackedState",
    "ScaleByIRpropPlusState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRpropPackedState",
    "ScaleByRpropPlusPackedState",
    "ScaleByRpropState",
    "ScaleByScheduleState",
    "Schedule",
    "TraceState",
    "Updates",
    "WeightDecayScheduleState",
    "ZeroNansState",
    "add_decayed_weights",
    "apply_every",
    "apply_if_finite",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_block_norm",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "ema",
    "exponential_decay",
    "flatten",
    "global_norm",
    "identity",
    "inject_hyperparams",
    "join_schedules",
    "join_transforms",
    "linear_onecycle_schedule",
    "linear_schedule",
    "masked",
    "multi_transform",
    "named_chain",
    "partition",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "restore_checkpoint",
    "rmsprop",
    "rprop",
    "rprop_prev_signs",
    "rprop_step_sizes",
    "save_checkpoint",
    "scale",
    "scale_by_learning_rate",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_schedule",
    "scale_by_stddev",
    "set_hyperparams",
    "set_to_zero",
    "sgdr_schedule",
    "skip_not_finite",
    "trace",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "zero_nans",
]

# Transforms as values (issue 26): every public constructor's transforms compare and hash
# equal when built alike and are valid arguments of jitted functions (gradtx/_values.py).
from gradtx._leafwise import leafwise
from gradtx._values import constructor
from gradtx._values import publish as _publish

_publish(globals())
__all__ += ["constructor", "leafwise"]

# help() reads plain text: the reStructuredText docstrings (for the site) become their
# plain-text form here; gradtx/_plaindoc.py keeps the originals for the site.
from gradtx._plaindoc import plain_docstrings as _plain_docstrings  # noqa: E402

_plain_docstrings(globals(), __all__)
del _plain_docstrings
