"""The optimizers of docs/write-your-own.md, run from the page as written, against NumPy
versions of their papers' pseudo-code (float64): signum (Bernstein et al. 2018, Algorithm
1), Lion (Chen et al. 2023, Algorithm 2, checked against optax.lion too) and WAME (Mosca
and Magoulas 2017, Algorithm 1). Also: they are values, and the engine's free features
(None leaves, complex params, paths in errors, abstract init) hold for them."""

from __future__ import annotations

from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.docs.test_docs_code import sessions

PAGE = Path(__file__).resolve().parents[2] / "docs" / "write-your-own.md"


def _page_namespace() -> dict:
    """The definitions of the page's first session (its blocks up to "Using them")."""
    namespace: dict = {"__name__": "__docs__"}
    for block in sessions(PAGE)[0].blocks:
        if block.language != "python":
            continue
        if block.code.lstrip().startswith(("traces = []", "tx = gradtx.inject")):
            break  # the usage examples: test_docs_code runs those
        exec(compile(block.code, str(PAGE), "exec"), namespace)
    return namespace


NS = _page_namespace()
signum, lion, wame = NS["signum"], NS["lion"], NS["wame"]

RNG = np.random.default_rng(26)
SHAPES = {"w": (3, 4), "b": (4,)}
PARAMS = {k: RNG.normal(size=s) for k, s in SHAPES.items()}
# gradients that change sign from step to step in places, none exactly 0
GRADS = [{k: RNG.normal(size=s) + 0.3 * np.cos(t) for k, s in SHAPES.items()} for t in range(12)]


# ---- NumPy, from the pseudo-code -------------------------------------------------------


def np_signum(grads, lr, beta):
    m, out = 0.0, []
    for g in grads:  # m_{k+1} = beta m_k + (1 - beta) g_k;  x_{k+1} = x_k - lr sign(m_{k+1})
        m = beta * m + (1 - beta) * g
        out.append(-lr * np.sign(m))
    return out


def np_lion(grads, theta0, lr, b1, b2, wd):
    m, theta, out = 0.0, theta0.copy(), []
    for g in grads:
        c = b1 * m + (1 - b1) * g
        new_theta = theta - lr * (np.sign(c) + wd * theta)
        m = b2 * m + (1 - b2) * g
        out.append(new_theta - theta)
        theta = new_theta
    return out, theta


def np_wame(grads, lr, alpha, eta_minus, eta_plus, zeta_min, zeta_max, eps):
    shape = grads[0].shape
    g_prev, zeta, z, theta = np.zeros(shape), np.ones(shape), np.zeros(shape), np.zeros(shape)
    out = []
    for g in grads:
        for i in np.ndindex(shape):  # element by element, as Algorithm 1 is written
            if g[i] * g_prev[i] > 0:
                zeta[i] = min(zeta[i] * eta_plus, zeta_max)
            elif g[i] * g_prev[i] < 0:
                zeta[i] = max(zeta[i] * eta_minus, zeta_min)
        z = alpha * z + (1 - alpha) * zeta
        theta = alpha * theta + (1 - alpha) * g**2
        out.append(-lr * z * g / (theta + eps))
        g_prev = g
    return out


def run(tx, params=PARAMS, grads=GRADS):
    """Updates of each step, params moving, jitted."""
    params = jax.tree.map(jnp.asarray, params)
    state, out = tx.init(params), []
    update = jax.jit(tx.update)
    for g in grads:
        u, state = update(jax.tree.map(jnp.asarray, g), state, params)
        params = jax.tree.map(lambda p, d: p + d, params, u)
        out.append(u)
    return out, params


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_signum_matches_the_pseudo_code(beta):
    got, _ = run(signum(0.05, beta=beta))
    for k in SHAPES:
        want = np_signum([g[k] for g in GRADS], 0.05, beta)
        np.testing.assert_array_equal(np.stack([u[k] for u in got]), np.stack(want))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lion_matches_the_pseudo_code_and_optax(wd):
    got, params = run(lion(0.01, weight_decay=wd))
    for k in SHAPES:
        want, theta = np_lion([g[k] for g in GRADS], PARAMS[k], 0.01, 0.9, 0.99, wd)
        np.testing.assert_allclose(
            np.stack([u[k] for u in got]), np.stack(want), rtol=1e-12, atol=1e-15
        )
        np.testing.assert_allclose(params[k], theta, rtol=1e-13)
    ref, _ = run(optax.lion(0.01, weight_decay=wd))
    chex.assert_trees_all_close(got, ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "kw", [{}, {"learning_rate": 0.05, "alpha": 0.5, "zeta_range": (0.1, 3.0)}]
)
def test_wame_matches_the_pseudo_code(kw):
    got, _ = run(wame(**kw))
    hp = {"learning_rate": 1e-3, "alpha": 0.9, "zeta_range": (0.01, 100.0)} | kw
    for k in SHAPES:
        want = np_wame(
            [g[k] for g in GRADS],
            hp["learning_rate"],
            hp["alpha"],
            0.1,
            1.2,
            *hp["zeta_range"],
            1e-12,
        )
        np.testing.assert_allclose(np.stack([u[k] for u in got]), np.stack(want), rtol=1e-12)


def test_wame_zeta_moves_as_rprop_step_sizes():
    """Sign kept: ζ grows by η+ up to ζmax; sign flipped: shrinks by η- down to ζmin."""
    tx = wame(zeta_range=(0.05, 1.5))
    state = tx.init({"w": jnp.zeros(2)})
    for t in range(4):
        _, state = tx.update({"w": jnp.array([1.0, (-1.0) ** t])}, state)
    # first step: no previous sign; then 1.2^3 = 1.728 clipped to 1.5, and 0.1^3 up to 0.05
    np.testing.assert_allclose(state.zeta["w"], [1.5, 0.05])


def test_they_are_values_and_get_the_engines_features():
    assert signum(0.1) == signum(0.1) and hash(lion(0.1)) == hash(lion(0.1))
    assert wame() == wame(1e-3) and wame() != wame(etas=(0.5, 1.2))
    params = {"w": jnp.ones(2, jnp.complex128), "skip": None}
    state = wame().init(params)
    assert state.zeta["w"].shape == (2, 2) and state.zeta["skip"] is None  # complex as reals
    abstract = lion(0.1).init({"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert abstract.momentum["w"] == jax.ShapeDtypeStruct((3,), jnp.float32)
    with pytest.raises(ValueError, match=r"\['w'\]"):
        signum(0.1).update({"w": jnp.ones(3)}, signum(0.1).init({"w": jnp.ones(2)}))
