"""The states of RMSprop's normalisers (:func:`gradtx.scale_by_rms`,
:func:`gradtx.scale_by_stddev`): optax's layouts, a field per average, each a tree
mirroring the params, and an ``int32`` ``count`` where the averages are bias-corrected."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


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
