"""bfloat16 params, optimizer state in bfloat16 or float32: how far from a float32 run?

    python -m benchmarks.mixed_precision            # prints a markdown table

A small MLP (8-32-32-1, tanh; 256 fixed samples of y = sin(sum x)) is trained full
batch from the same start three ways: float32 params (the reference), bfloat16 params
with bfloat16 state, bfloat16 params with float32 state (``accumulator_dtype``). The
forward pass runs in float32 in all three (params widened), so only the optimizer's
precision and the params' storage differ.

Two distances to the float32 run, per optimizer:

* *free-running*: ``||p - p_ref|| / ||p_ref||`` after N steps. This includes the
  rounding of every param update to bfloat16, the same with either state.
* *update error*: both bfloat16 optimizers driven along the float32 run's trajectory
  (its params and gradients, rounded to bfloat16); the median over N steps of
  ``||u - u_ref|| / ||u_ref||``, in units of bfloat16's roundoff u = 2^-8: the
  optimizer's own arithmetic (``tests/properties/test_accumulator_dtype.py`` asserts its bound).

A row whose transform has no ``accumulator_dtype`` shows the bfloat16 state only.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

import gradtx

U = 2.0**-8
STEPS = (100, 300)
OPTIMIZERS = {
    "rmsprop(1e-2)": (gradtx.rmsprop, {"learning_rate": 1e-2}),
    "rmsprop(1e-2, momentum=0.9, centered=True)": (
        gradtx.rmsprop,
        {"learning_rate": 1e-2, "momentum": 0.9, "centered": True},
    ),
    "rprop(1e-3)": (gradtx.rprop, {"learning_rate": 1e-3}),
}


def mlp(key, sizes=(8, 32, 32, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "w": jax.random.normal(k, (m, n), jnp.float32) / np.sqrt(m),
            "b": jnp.zeros(n, jnp.float32),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def loss(params, x, y):
    h = x
    for layer in params[:-1]:
        h = jnp.tanh(h @ layer["w"].astype(jnp.float32) + layer["b"].astype(jnp.float32))
    out = h @ params[-1]["w"].astype(jnp.float32) + params[-1]["b"].astype(jnp.float32)
    return jnp.mean((out - y) ** 2)


def cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


def rel(a, b):
    a = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(a)])
    b = jnp.concatenate([x.astype(jnp.float32).ravel() for x in jax.tree.leaves(b)])
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


def measure(make, kw, n):
    wide_ok = "accumulator_dtype" in inspect.signature(make).parameters
    txs = [make(**kw), make(**kw)]  # float32 params; bfloat16 params, bfloat16 state
    if wide_ok:
        txs.append(make(**kw, accumulator_dtype=jnp.float32))
    x = jax.random.normal(jax.random.PRNGKey(1), (256, 8), jnp.float32)
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    p0 = mlp(jax.random.PRNGKey(0))
    starts = [p0] + [cast(p0, jnp.bfloat16)] * (len(txs) - 1)

    def free(carry, _):  # each run on its own params
        ps, ss = carry
        out = [tx.update(jax.grad(loss)(p, x, y), s, p) for tx, p, s in zip(txs, ps, ss)]
        ps = [gradtx.apply_updates(p, u) for p, (u, _) in zip(ps, out)]
        return (ps, [s for _, s in out]), None

    def forced(carry, _):  # the bfloat16 runs fed the float32 run's params and gradients
        p, ss = carry
        g = jax.grad(loss)(p, x, y)
        u, s0 = txs[0].update(g, ss[0], p)
        g16, p16 = cast(g, jnp.bfloat16), cast(p, jnp.bfloat16)
        outs = [tx.update(g16, s, p16) for tx, s in zip(txs[1:], ss[1:])]
        errors = jnp.stack([rel(ub, u) for ub, _ in outs])
        return (gradtx.apply_updates(p, u), [s0] + [s for _, s in outs]), errors

    states = [tx.init(p) for tx, p in zip(txs, starts)]
    (ps, _), _ = jax.jit(lambda c: jax.lax.scan(free, c, length=n))((starts, states))
    _, errors = jax.jit(lambda c: jax.lax.scan(forced, c, length=n))((p0, states))
    distances = [float(rel(p, ps[0])) for p in ps[1:]]
    medians = [float(np.median(np.asarray(errors)[:, i])) / U for i in range(len(txs) - 1)]
    return distances, medians


def main():
    n_max = max(STEPS)
    print(f"bfloat16 params; distance to the float32-param run (jax {jax.__version__}, CPU)\n")
    head = ["optimizer", "state"] + [f"after {n} steps" for n in STEPS]
    print("| " + " | ".join([*head, f"update error (median of {n_max}, u = 2^-8)"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    for name, (make, kw) in OPTIMIZERS.items():
        rows = {}
        for n in STEPS:
            distances, medians = measure(make, kw, n)
            for state, d, m in zip(["bfloat16", "float32"], distances, medians):
                rows.setdefault(state, []).append(f"{d:.2e}")
                if n == n_max:
                    rows[state].append(f"{m:.1f}u")
        for state, cells in rows.items():
            print(f"| {name} | {state} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
