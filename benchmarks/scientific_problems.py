"""The full-batch problems of ``benchmarks/scientific.py``, each with a known answer.

Every problem gives: ``init(seed, dtype)`` (the starting point of that seed, the same for
every optimizer), ``loss(params)`` (full batch, in the params' dtype) and
``error(params)`` (the accuracy measure the table reports).

* ``poisson``: -u'' = 4 pi^2 sin(2 pi x) on [0, 1], u(0) = u(1) = 0, known solution
  u = sin(2 pi x); tanh MLP 1-20-20-20-1, 128 fixed collocation points; error: relative
  L2 of u on 1,001 test points.
* ``burgers``: u_t + u u_x = nu u_xx, x in [-1, 1], t in [0, 1], u(x, 0) = -sin(pi x),
  u(+-1, t) = 0, nu = 0.01 / pi (Raissi et al. 2019's set-up), the solution by the
  Cole-Hopf transform (Gauss-Hermite quadrature, float64); tanh MLP 2-20-20-20-1 (Raissi
  et al. used 9 layers of 20 and 10,000 points: smaller here to fit 2 CPU cores), 500
  collocation, 100 initial and 100 boundary points; error: relative L2 on a 64 x 64 grid.
* ``lotka_volterra``: the predator-prey model dx/dt = a x - b x y, dy/dt = d x y - c y,
  (a, b, c, d) = (1, 0.1, 1.5, 0.075), (x0, y0) = (10, 5), integrated by RK4 in lax.scan
  (dt = 0.1, 150 steps); 30 noisy observations (5% Gaussian) of both species; the fit is
  in log-parameters from a start 25% off per parameter (log-normal, per seed); error:
  relative distance of the parameters to the least-squares optimum (found by optimistix's
  Levenberg-Marquardt in float64, an independent solver).
* ``biexponential``: y = a1 exp(-k1 t) + a2 exp(-k2 t), (3, 2, 1, 0.3), 40 points on
  [0, 10], noise 0.01; start 30% off (log-normal, per seed); error: as for the ODE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass
class Problem:
    name: str
    init: Callable  # (seed, dtype) -> params
    loss: Callable  # params -> scalar
    error: Callable  # params -> scalar
    error_name: str


# --------------------------------------------------------------------------------------
# tanh MLPs (Glorot-normal weights, zero biases, as the PINN papers initialise)
# --------------------------------------------------------------------------------------


def mlp_init(seed, sizes, dtype):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    layers = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):
        std = np.sqrt(2.0 / (n_in + n_out))
        w = std * jax.random.normal(k, (n_in, n_out), jnp.float64)
        layers.append({"w": w.astype(dtype), "b": jnp.zeros(n_out, dtype)})
    return layers


def mlp(layers, x):
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _relative_l2(pred, exact):
    return jnp.linalg.norm(pred - exact) / jnp.linalg.norm(exact)


def _dtype_of(params):
    return jax.tree.leaves(params)[0].dtype


# --------------------------------------------------------------------------------------
# 1D Poisson
# --------------------------------------------------------------------------------------


def poisson() -> Problem:
    x_col = jnp.linspace(0.0, 1.0, 130)[1:-1]
    x_test = jnp.linspace(0.0, 1.0, 1001)
    u_exact = jnp.sin(2 * jnp.pi * x_test)

    def u(params, x):
        return mlp(params, x.reshape(1, 1))[0, 0]

    def loss(params):
        dt = _dtype_of(params)
        xs = x_col.astype(dt)
        u_xx = jax.vmap(jax.grad(jax.grad(u, 1), 1), (None, 0))(params, xs)
        f = 4 * jnp.pi**2 * jnp.sin(2 * jnp.pi * xs)
        residual = -u_xx - f
        bc = u(params, jnp.zeros((), dt)) ** 2 + u(params, jnp.ones((), dt)) ** 2
        return jnp.mean(residual**2) + bc

    def error(params):
        dt = _dtype_of(params)
        pred = mlp(params, x_test.astype(dt)[:, None])[:, 0]
        return _relative_l2(pred, u_exact.astype(dt))

    return Problem(
        "poisson", lambda s, dt: mlp_init(s, [1, 20, 20, 20, 1], dt), loss, error, "rel. L2 of u"
    )


# --------------------------------------------------------------------------------------
# viscous Burgers, exact by Cole-Hopf
# --------------------------------------------------------------------------------------


def burgers_exact(x, t, nu, n_nodes=250):
    """Cole-Hopf: u = -int sin(pi(x - s z)) F e^{-z^2} dz / int F e^{-z^2} dz with
    s = sqrt(4 nu t), F = exp(-cos(pi (x - s z)) / (2 pi nu)); Gauss-Hermite in float64,
    the exponent shifted by its maximum (log-sum-exp) so that nothing overflows."""
    z, w = np.polynomial.hermite.hermgauss(n_nodes)
    x, t = np.broadcast_arrays(np.asarray(x, float), np.asarray(t, float))
    y = x[..., None] - np.sqrt(4 * nu * t)[..., None] * z
    expo = -np.cos(np.pi * y) / (2 * np.pi * nu)
    expo -= expo.max(axis=-1, keepdims=True)
    weight = w * np.exp(expo)
    u = -(np.sin(np.pi * y) * weight).sum(-1) / weight.sum(-1)
    return np.where(t == 0, -np.sin(np.pi * x), u)


def burgers() -> Problem:
    nu = 0.01 / np.pi
    rng = np.random.default_rng(1234)
    col = np.stack([rng.uniform(-1, 1, 500), rng.uniform(0, 1, 500)], 1)
    x_ic = np.linspace(-1, 1, 100)
    ic = np.stack([x_ic, np.zeros(100)], 1)
    t_bc = rng.uniform(0, 1, 50)
    bc = np.concatenate([np.stack([-np.ones(50), t_bc], 1), np.stack([np.ones(50), t_bc], 1)])
    xg, tg = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(0, 1, 64))
    test = np.stack([xg.ravel(), tg.ravel()], 1)
    exact = burgers_exact(test[:, 0], test[:, 1], nu)

    def u(params, x, t):
        return mlp(params, jnp.stack([x, t])[None, :])[0, 0]

    def residual(params, x, t):
        u_, (u_x, u_t) = jax.value_and_grad(u, (1, 2))(params, x, t)
        u_xx = jax.grad(jax.grad(u, 1), 1)(params, x, t)
        return u_t + u_ * u_x - nu * u_xx

    def loss(params):
        dt = _dtype_of(params)
        c = jnp.asarray(col, dt)
        r = jax.vmap(residual, (None, 0, 0))(params, c[:, 0], c[:, 1])
        u_ic = mlp(params, jnp.asarray(ic, dt))[:, 0] + jnp.sin(jnp.pi * jnp.asarray(x_ic, dt))
        u_bc = mlp(params, jnp.asarray(bc, dt))[:, 0]
        return jnp.mean(r**2) + jnp.mean(u_ic**2) + jnp.mean(u_bc**2)

    def error(params):
        dt = _dtype_of(params)
        pred = mlp(params, jnp.asarray(test, dt))[:, 0]
        return _relative_l2(pred, jnp.asarray(exact, dt))

    return Problem(
        "burgers", lambda s, dt: mlp_init(s, [2, 20, 20, 20, 1], dt), loss, error, "rel. L2 of u"
    )


# --------------------------------------------------------------------------------------
# parameter estimation: Lotka-Volterra by RK4, and a biexponential curve fit
# --------------------------------------------------------------------------------------

LV_TRUE = np.array([1.0, 0.1, 1.5, 0.075])


def lv_simulate(log_theta, dtype):
    a, b, c, d = jnp.exp(log_theta)
    dt = jnp.asarray(0.1, dtype)

    def f(z):
        x, y = z[0], z[1]
        return jnp.stack([a * x - b * x * y, d * x * y - c * y])

    def rk4(z, _):
        k1 = f(z)
        k2 = f(z + dt / 2 * k1)
        k3 = f(z + dt / 2 * k2)
        k4 = f(z + dt * k3)
        z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return z, z

    _, path = jax.lax.scan(rk4, jnp.asarray([10.0, 5.0], dtype), None, length=150)
    return path[4::5]  # t = 0.5, 1.0, ..., 15.0


def _least_squares_optimum(residuals, start):
    """The float64 least-squares optimum by optimistix's Levenberg-Marquardt."""
    import optimistix as optx

    solver = optx.LevenbergMarquardt(rtol=1e-12, atol=1e-12)
    sol = optx.least_squares(lambda p, _: residuals(p), solver, start, max_steps=2000)
    return np.asarray(sol.value)


def _fit_problem(name, residuals_of, true_log, spread, error_name):
    # float64: benchmarks/scientific.py enables x64 before it builds a problem
    best = _least_squares_optimum(residuals_of, jnp.asarray(true_log, jnp.float64))

    def init(seed, dtype):
        rng = np.random.default_rng(seed)
        return jnp.asarray(true_log + spread * rng.normal(size=true_log.shape), dtype)

    def loss(p):
        return 0.5 * jnp.mean(residuals_of(p) ** 2)

    def error(p):
        b = jnp.asarray(best, p.dtype)
        return jnp.linalg.norm(jnp.exp(p) - jnp.exp(b)) / jnp.linalg.norm(jnp.exp(b))

    problem = Problem(name, init, loss, error, error_name)
    problem.optimum = np.exp(best)
    return problem


def lotka_volterra() -> Problem:
    clean = np.asarray(lv_simulate(jnp.log(LV_TRUE), jnp.float64))
    noisy = clean * (1 + 0.05 * np.random.default_rng(7).normal(size=clean.shape))

    def residuals(log_theta):
        dt = log_theta.dtype
        return ((lv_simulate(log_theta, dt) - noisy.astype(dt)) / 10.0).ravel()

    return _fit_problem(
        "lotka_volterra", residuals, np.log(LV_TRUE), 0.25, "rel. error of (a,b,c,d)"
    )


BIEXP_TRUE = np.array([3.0, 2.0, 1.0, 0.3])


def biexponential() -> Problem:
    t = np.linspace(0, 10, 40)
    a1, k1, a2, k2 = BIEXP_TRUE
    y = a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t)
    y = y + 0.01 * np.random.default_rng(11).normal(size=t.shape)

    def residuals(log_theta):
        dt = log_theta.dtype
        a1, k1, a2, k2 = jnp.exp(log_theta)
        tt = jnp.asarray(t, dt)
        return a1 * jnp.exp(-k1 * tt) + a2 * jnp.exp(-k2 * tt) - jnp.asarray(y, dt)

    return _fit_problem(
        "biexponential", residuals, np.log(BIEXP_TRUE), 0.3, "rel. error of (a1,k1,a2,k2)"
    )


PROBLEMS = {
    "poisson": poisson,
    "burgers": burgers,
    "lotka_volterra": lotka_volterra,
    "biexponential": biexponential,
}
