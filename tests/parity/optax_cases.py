"""The optax parity tests' shared cases: params and gradients that mix float32 and
float64 leaves of several shapes, a scalar and a zero-size array among them."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import gradtx
from tests import _tolerance as h

STEPS = 12
SHAPES = {
    "m": ((3, 4), np.float64),
    "v": ((5,), np.float32),
    "s": ((), np.float64),
    "n": {"e": ((0,), np.float32), "x": ((2,), np.float32), "y": ((3,), np.float64)},
}


def random_tree(rng, scale_exp=(-3, 2), dtype_override=None):
    def leaf(spec):
        shape, dtype = spec
        dtype = dtype_override or dtype
        x = rng.standard_normal(shape) * 10.0 ** rng.integers(*scale_exp, shape)
        return jnp.asarray(x, dtype)

    return jax.tree.map(leaf, SHAPES, is_leaf=lambda x: isinstance(x, tuple))


RNG = np.random.default_rng(42)
PARAMS = random_tree(RNG, (0, 1))
GRADS = [random_tree(RNG) for _ in range(STEPS)]


def leaves_of(seq):
    return [jax.tree.leaves(t) for t in seq]


def grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*axes.values())]


def value_id(v):
    """A test id for a hyperparameter: a function by its name (its repr holds an address,
    which differs between pytest-xdist's workers, and they must collect the same ids)."""
    return getattr(v, "__name__", None) or str(v) if callable(v) else str(v)


def config_id(kw):
    return ",".join(f"{k}={value_id(v)}" for k, v in kw.items())


def count_schedule(count):
    return 0.1 / (1.0 + count)


def trajectory(tx, steps=30, zero_first=False, nudge=None):
    """Params after each of ``steps`` updates on g = 0.5 (p - c) + noise (fixed seed);
    ``zero_first``: the first gradient is zero; ``nudge`` (``_tolerance.NUDGES``): the
    initial params or every (nonzero) gradient one ulp up."""
    rng = np.random.default_rng(7)
    target = random_tree(rng, (-1, 1))
    noise = [random_tree(rng, (-1, 0)) for _ in range(steps)]
    p = h.nudge(PARAMS) if nudge == "params" else PARAMS
    s, out = tx.init(p), []
    for t, n in enumerate(noise):
        g = jax.tree.map(lambda p, c, e: 0.5 * (p - c) + e, p, target, n)
        g = h.nudge(g) if nudge == "grads" else g
        if zero_first and t == 0:
            g = jax.tree.map(jnp.zeros_like, g)
        u, s = tx.update(g, s, p)
        p = gradtx.apply_updates(p, u)
        out.append(p)
    return out
