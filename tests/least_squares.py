"""The wrapper tests' problem: least squares 0.5 * mean((A x + c - b)^2) over a few rows
(NumPy, on the host), and gradtx and torch runs on it (``tests/_runners.py``)."""

import numpy as np

from tests._runners import run_gradtx, run_torch

RNG = np.random.default_rng(0)
A = RNG.standard_normal((32, 5))
B = RNG.standard_normal(32)


def grad_fn(params, rows=slice(None)):
    """Gradient of the mean squared error 0.5 * mean((A x + c - b)^2) over ``rows``."""
    a, b = A[rows], B[rows]
    r = a @ np.asarray(params["x"]) + np.asarray(params["c"]) - b
    return {"x": a.T @ r / len(b), "c": np.asarray(np.mean(r))}


def params0(dtype=np.float64):
    return {"x": np.linspace(-1, 1, 5).astype(dtype), "c": np.asarray(0.5, dtype)}


def run(tx, steps, dtype=np.float64, nudge=None, before_step=None):
    """``run_gradtx`` on this file's problem (``grad_fn`` is NumPy: on the host)."""
    grads = lambda p, t: grad_fn(p)  # noqa: E731
    return run_gradtx(
        tx, params0(dtype), grads, steps, host_grads=True, nudge=nudge, before_step=before_step
    )


def run_t(make_opt, steps, before_step=None, nudge=None):
    """``run_torch`` on this file's problem; ``make_opt([x, c])`` -> (opt, scheduler)."""
    return run_torch(
        lambda t: make_opt([t["x"], t["c"]]),
        params0(),
        lambda p, t: grad_fn(p),
        steps,
        before_step=before_step,
        nudge=nudge,
    )
