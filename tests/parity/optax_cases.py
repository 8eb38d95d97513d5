"""The optax parity tests' shared cases: params and gradients that mix float32 and
float64 leaves of several shapes, a scalar and a zero-size array among them."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

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


@functools.cache
def _problem(steps):
    """The target and every step's noise, as NumPy leaves: drawn once per ``steps``, the
    same draws (and values) for every run."""
    rng = np.random.default_rng(7)
    target = random_tree(rng, (-1, 1))
    noise = [random_tree(rng, (-1, 0)) for _ in range(steps)]
    return [np.asarray(x) for x in jax.tree.leaves(target)], [
        [np.asarray(x) for x in jax.tree.leaves(n)] for n in noise
    ]


def trajectory(tx, steps=30, zero_first=False):
    """Params after each of ``steps`` updates on g = 0.5 (p - c) + noise (fixed seed);
    ``zero_first``: the first gradient is zero."""
    return trajectories(tx, steps, zero_first, (None,))[0]


def trajectories(tx, steps=30, zero_first=False, nudges=(None, *h.NUDGES)):
    """:func:`trajectory` for each of ``nudges`` (None, or one of ``_tolerance.NUDGES``:
    the initial params or every (nonzero) gradient one ulp up). Several runs go side by
    side, each leaf stacked along a leading axis, one row per run (for optax's eager,
    elementwise updates: each row gets its own run's numbers, bit for bit). The gradients
    and ``p + u`` are computed in NumPy: the same IEEE operations in the same dtypes and
    order as JAX's eager ones, so the same bits, without a dispatch per leaf and step."""
    target, noise = _problem(steps)
    leaves, treedef = jax.tree.flatten(PARAMS)
    p = [np.stack([np.asarray(x)] * len(nudges)) for x in leaves]  # [run, ...] per leaf
    nudged = [i for i, n in enumerate(nudges) if n == "params"]
    p = [_nudge_rows(x, nudged) for x in p]
    nudged = [i for i, n in enumerate(nudges) if n == "grads"]
    one = len(nudges) == 1  # a single run keeps the params' own shapes

    def to_jax(xs):
        return treedef.unflatten([jnp.asarray(x[0] if one else x) for x in xs])

    s, out = tx.init(to_jax(p)), []
    for t, e in enumerate(noise):
        g = [0.5 * (x - c) + n for x, c, n in zip(p, target, e)]
        g = [np.zeros_like(x) if zero_first and t == 0 else _nudge_rows(x, nudged) for x in g]
        u, s = tx.update(to_jax(g), s, to_jax(p))
        u = [np.asarray(y).reshape(x.shape) for x, y in zip(p, jax.tree.leaves(u))]
        p = [(x + y).astype(x.dtype) for x, y in zip(p, u)]  # gradtx.apply_updates's sum
        out.append(p)
    return [[treedef.unflatten([x[i] for x in ps]) for ps in out] for i in range(len(nudges))]


def _nudge_rows(x, rows):
    """``x`` with its ``rows`` (along the first axis) one ulp up."""
    if rows:
        x = x.copy()
        x[rows] = h.nudge(x[rows])
    return x
