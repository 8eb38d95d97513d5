"""gradtx against ``keras.optimizers.RMSprop`` (Keras 3, JAX backend), run side by side.

Keras's RMSprop is the TensorFlow convention: eps inside the square root and the learning
rate inside the momentum buffer. ``recipes.keras_rmsprop`` reproduces it with gradtx
blocks; here both run 40 steps on float32 and float64 variables.

Tolerances come from Keras's own conditioning (``_tolerance.tolerance``): float32 with
``centered=True`` gets looser ones, measured, not argued: Keras divides by ``sqrt`` where
gradtx multiplies by ``rsqrt`` (one rounding apart in the update), and the centered
variance ``v - a^2`` of a slowly varying gradient cancels in float32 (``v`` ~ 1e4 here,
rounded to ~1e-3, against eps = 1e-2), which Keras's run against itself with its
gradients one ulp up shows.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests import _runners as r
from tests import _tolerance as h

from .recipes import keras_rmsprop

STEPS = 40

CONFIGS = [
    {"rho": rho, "epsilon": eps, "momentum": m, "centered": c}
    for m in (0.0, 0.5)
    for c in (False, True)
    for rho, eps in ((0.9, 1e-7), (0.5, 1e-2))
] + [{"momentum": 0.9, "weight_decay": 0.01}, {"weight_decay": 0.1, "centered": True}]


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on the JAX backend, imported by the worker that runs this file (seconds),
    not at collection. KERAS_BACKEND is read once, at keras's first import: if something
    imported keras first with another backend, fail loudly rather than skip."""
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    return keras


def run_keras(keras, kwargs, prob, steps):
    variables = [keras.Variable(np.array(x), dtype=x.dtype.name) for x in prob.leaves["theta"]]
    opt = keras.optimizers.RMSprop(learning_rate=0.01, **kwargs)
    out = []
    for t in range(steps):
        grads = [prob.grad(i, np.asarray(v.value), t) for i, v in enumerate(variables)]
        opt.apply_gradients(zip(grads, variables))
        out.append([np.asarray(v.value) for v in variables])
    return out


@pytest.mark.parametrize(
    "kwargs", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
def test_keras_rmsprop(keras, kwargs):
    prob = r.small_problem(STEPS)
    theirs = run_keras(keras, kwargs, prob, STEPS)
    nudged = [run_keras(keras, kwargs, prob.nudged(n), STEPS) for n in h.NUDGES]
    lr = float(np.float32(0.01))  # Keras holds the learning rate in a float32 variable
    ours = r.run_gradtx_eager(keras_rmsprop(lr, **kwargs), prob, STEPS)
    ref = "keras.optimizers.RMSprop"
    h.check_against(ref, str(kwargs), prob.dtypes, ours, theirs, nudged, STEPS)
