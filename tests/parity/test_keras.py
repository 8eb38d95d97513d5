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


def run_keras(keras, kwargs, probs, steps):
    """Keras's runs on each of ``probs`` (the same problem, plain or nudged), side by
    side: each variable holds every run's copy of its leaf, stacked along a leading axis
    (RMSprop's update is elementwise, one eager op at a time: each row gets its own run's
    numbers, bit for bit, with a third of the dispatches). Per run, the list over steps
    of leaf lists."""
    theta = zip(*(p.leaves["theta"] for p in probs))
    variables = [keras.Variable(np.stack(x), dtype=x[0].dtype.name) for x in theta]
    opt = keras.optimizers.RMSprop(learning_rate=0.01, **kwargs)
    out = []
    for t in range(steps):
        values = [np.asarray(v.value) for v in variables]
        grads = [
            np.stack([p.grad(i, v[k, ...], t) for k, p in enumerate(probs)])
            for i, v in enumerate(values)
        ]
        opt.apply_gradients(zip(grads, variables))
        out.append([np.asarray(v.value) for v in variables])
    return [[[x[k, ...] for x in leaves] for leaves in out] for k in range(len(probs))]


@pytest.mark.parametrize(
    "kwargs", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items())
)
def test_keras_rmsprop(keras, kwargs):
    prob = r.small_problem(STEPS)
    probs = [prob] + [prob.nudged(n) for n in h.NUDGES]
    theirs, *nudged = run_keras(keras, kwargs, probs, STEPS)
    lr = float(np.float32(0.01))  # Keras holds the learning rate in a float32 variable
    ours = r.run_gradtx_eager(keras_rmsprop(lr, **kwargs), prob, STEPS)
    ref = "keras.optimizers.RMSprop"
    h.check_against(ref, str(kwargs), prob.dtypes, ours, theirs, nudged, STEPS)
