"""The param-group and weight-decay tests' problem: a linear fit x w + b ~ y over 16 rows
(NumPy, on the host), two leaves (``w`` of shape (3, 2), ``b`` of shape (2,)) to put in
groups, and a gradtx run on it (``tests/_runners.py``). Used by ``test_combine.py`` and
``test_weight_decay.py``."""

import numpy as np

from tests._runners import run_gradtx

RNG = np.random.default_rng(1)
X = RNG.standard_normal((16, 3))
Y = RNG.standard_normal((16, 2))


def params0(dtype=np.float64):
    return {"w": np.linspace(-1, 1, 6).reshape(3, 2).astype(dtype), "b": np.full(2, 0.3, dtype)}


def grad_fn(p, t=0):
    """Gradient of 0.5 * mean ||x w + b - y||^2."""
    r = X @ p["w"] + p["b"] - Y
    return {"w": X.T @ r / len(X), "b": r.mean(0)}


def run(tx, steps, dtype=np.float64):
    return run_gradtx(tx, params0(dtype), grad_fn, steps)
