"""gradtx.rprop under optimistix: ``optx.minimise(fn, optx.OptaxMinimiser(tx, rtol, atol), y0)``.

optimistix stops an ``OptaxMinimiser`` when, in one step, both the move and the change of
the loss are small (``optimistix._misc.cauchy_termination``, max norm):

    |u_i| < atol + rtol * |y_i|  for every i,   and   |f_t - f_(t-1)| < atol + rtol * |f_t|.

An Rprop move is ``±Δ_i`` with ``Δ_i >= Δmin`` (or 0 after a sign change in the "i"
variants), so whether a fit stops depends on ``Δmin`` against ``atol``. These tests pin the
behaviour docs/full-batch.md describes, on a float64 exponential-decay curve fit whose
optimum comes from optimistix's own BFGS (the reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import gradtx

X = jnp.linspace(0.0, 4.0, 50, dtype=jnp.float64)
NOISE = jnp.asarray(np.random.default_rng(0).normal(size=50), jnp.float64)
Y = 2.0 * jnp.exp(-1.3 * X) + 0.5 + 0.01 * NOISE
Y0 = jnp.array([1.0, 1.0, 0.0], jnp.float64)


def fn(p, args=None):
    del args
    return 0.5 * jnp.mean((p[0] * jnp.exp(-p[1] * X) + p[2] - Y.astype(p.dtype)) ** 2)


@pytest.fixture(scope="module")
def optimum():
    """The least-squares optimum, by optimistix's BFGS (not a gradtx transform)."""
    sol = optx.minimise(fn, optx.BFGS(rtol=1e-10, atol=1e-10), Y0, max_steps=2000, throw=False)
    return sol.value, float(fn(sol.value))


def _solve(variant, min_step, tol, dtype=jnp.float64, max_steps=3000):
    tx = gradtx.rprop(0.01, step_sizes=(min_step, 50.0), variant=variant)
    solver = optx.OptaxMinimiser(tx, rtol=tol, atol=tol)
    sol = optx.minimise(fn, solver, Y0.astype(dtype), max_steps=max_steps, throw=False)
    stopped = bool(sol.result == optx.RESULTS.successful)
    return sol.value, int(sol.stats["num_steps"]), stopped


@pytest.mark.parametrize("variant", ["rprop-", "rprop+", "irprop+", "irprop-"])
def test_every_variant_stops_with_delta_min_below_atol(variant, optimum):
    """Δmin = 1e-12 < atol = rtol = 1e-8: every variant stops by optimistix's test, well
    before max_steps. The three whose steps do not vanish at once reach the optimum's loss
    to 1e-9 relative; iRprop- zeroes the move of every weight whose gradient changed sign,
    and when all three flip together the move test passes at once: it stops early, 1e-3
    relative above the optimum (the documented reason to check a fit's gradient)."""
    y, steps, stopped = _solve(variant, 1e-12, 1e-8)
    y_star, f_star = optimum
    assert stopped and steps < 1000, (steps, stopped)
    excess = float(fn(y)) / f_star - 1.0
    assert 0.0 <= excess < (1e-3 if variant == "irprop-" else 1e-9), excess
    if variant != "irprop-":
        np.testing.assert_allclose(y, y_star, atol=1e-5)


@pytest.mark.parametrize("variant", ["rprop-", "rprop+", "irprop+"])
def test_torch_default_delta_min_above_atol_never_stops(variant):
    """torch's Δmin = 1e-6 > atol + rtol * |y| (tolerances 1e-8): the "-" moves never
    shrink below 1e-6, so these variants run to max_steps (optimistix reports it)."""
    _, steps, stopped = _solve(variant, 1e-6, 1e-8, max_steps=400)
    assert not stopped and steps == 400


@pytest.mark.parametrize("variant", ["rprop+", "irprop+"])
def test_float32_stops_with_tolerances_above_its_resolution(variant, optimum):
    """float32: a move cannot be resolved below about one ulp of y (1.2e-7 |y|), so
    tolerances of 1e-6 (and Δmin below them) let a float32 fit stop, near the float64
    optimum."""
    y, steps, stopped = _solve(variant, 1e-8, 1e-6, dtype=jnp.float32)
    assert stopped and steps < 1000 and y.dtype == jnp.float32
    np.testing.assert_allclose(y, optimum[0], atol=1e-4)


def test_irprop_plus_gets_the_loss_as_value():
    """optimistix passes value=f (the loss at the current y) to the transform's update:
    iRprop+ under optx.minimise makes exactly the moves of a by-hand loop that passes
    value=loss (without value= iRprop+ would refuse to run)."""
    tx = gradtx.rprop(0.05, variant="irprop+")
    steps = 25
    solver = optx.OptaxMinimiser(tx, rtol=0.0, atol=0.0)
    sol = optx.minimise(fn, solver, Y0, max_steps=steps, throw=False)
    assert int(sol.stats["num_steps"]) == steps

    @jax.jit
    def step(y, state):
        value, grad = jax.value_and_grad(fn)(y)
        updates, state = tx.update(grad, state, y, value=value)
        return gradtx.apply_updates(y, updates), state

    y, state = Y0, tx.init(Y0)
    for _ in range(steps):
        y, state = step(y, state)
    np.testing.assert_array_equal(sol.value, y)
