"""Many small layers: full train steps with params per leaf, in one flat buffer, or stacked.

    python -m benchmarks.many_leaves [--quick] [--leaves 100 1000]

A residual MLP of ``leaves / 2`` layers of width 64 (weights and biases: ``leaves``
param leaves), batch 64, one jitted and donated step: forward, backward and update.
Three layouts of the same params:

* per-leaf: a tree of ``{"w", "b"}`` per layer (what most models hold);
* flat buffer: one float32 vector that the model slices its layers from
  (``jax.flatten_util.ravel_pytree``'s ``unravel`` inside the loss): the backward pass
  builds one flat gradient and the optimizer runs one kernel per step;
* tree + flatten: the per-leaf tree, the optimizer wrapped in ``gradtx.flatten`` /
  ``optax.flatten`` (the gradients concatenated inside the step, the state one vector);
* stacked (scan): the layers' weights stacked into ``(L, 64, 64)`` and ``(L, 64)`` and
  the model a ``lax.scan`` over them: 2 leaves (needs layers of one shape).

Each layout runs gradtx's and optax's Rprop and RMSprop and SGD (the floor); all
contenders of a leaf count race interleaved. Time ratios are over optax's per-leaf step
with the same optimizer; trace, lowering and XLA compile seconds of each step are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import gradtx
from benchmarks import run
from benchmarks.contenders import fresh
from benchmarks.stats import paired_ratio

WIDTH, BATCH = 64, 64


def make_params(depth: int) -> dict:
    rng = np.random.default_rng(0)
    return {
        f"l{i:04d}": {
            "w": jnp.asarray(rng.standard_normal((WIDTH, WIDTH), np.float32) / WIDTH**0.5),
            "b": jnp.zeros(WIDTH, jnp.float32),
        }
        for i in range(depth)
    }


def mlp(params: dict, x):
    for k in sorted(params):
        x = x + jnp.tanh(x @ params[k]["w"] + params[k]["b"])
    return x


def stacked_mlp(p: dict, x):
    def body(x, wb):
        w, b = wb
        return x + jnp.tanh(x @ w + b), None

    return jax.lax.scan(body, x, (p["w"], p["b"]))[0]


class Step:
    """A jitted, donated train step; ``first_call`` times trace, lowering and compile."""

    def __init__(self, tx, params, model, apply):
        rng = np.random.default_rng(1)
        x = jnp.asarray(rng.standard_normal((BATCH, WIDTH), np.float32))
        y = jnp.asarray(rng.standard_normal((BATCH, WIDTH), np.float32))

        def step(params, state):
            grads = jax.grad(lambda p: jnp.mean((model(p, x) - y) ** 2))(params)
            updates, state = tx.update(grads, state, params)
            return apply(params, updates), state

        self.params, self.state = params, tx.init(params)
        self.jitted = jax.jit(step, donate_argnums=(0, 1))
        self.compile = (0.0, 0.0, 0.0)

    def first_call(self):
        t0 = time.perf_counter()
        traced = self.jitted.trace(self.params, self.state)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        self.fn = lowered.compile()
        self.compile = (t1 - t0, t2 - t1, time.perf_counter() - t2)
        self.step()

    def rehome(self):
        """Fresh buffers for params and state, in the race's random order (see
        ``contenders.JaxRunner.rehome``: otherwise the step built first is the slowest)."""
        self.params, self.state = fresh((self.params, self.state))

    def step(self):
        self.params, self.state = self.fn(self.params, self.state)
        jax.block_until_ready(self.params)


OPTIMIZERS = {
    "gradtx rprop": (lambda: gradtx.rprop(1e-3), gradtx.apply_updates),
    "optax rprop": (lambda: optax.rprop(1e-3), optax.apply_updates),
    "gradtx rmsprop": (lambda: gradtx.rmsprop(1e-3), gradtx.apply_updates),
    "optax rmsprop": (lambda: optax.rmsprop(1e-3, eps_in_sqrt=False), optax.apply_updates),
    "sgd (floor)": (lambda: optax.sgd(1e-3), optax.apply_updates),
}


def contenders(depth: int, optimizers=tuple(OPTIMIZERS)) -> dict:
    tree = make_params(depth)
    _, unravel = ravel_pytree(tree)
    layouts = {
        "per-leaf": (lambda: make_params(depth), mlp),
        "flat buffer": (
            lambda: ravel_pytree(make_params(depth))[0],
            lambda f, x: mlp(unravel(f), x),
        ),
        "stacked (scan)": (
            lambda: {k: jnp.stack([tree[n][k] for n in sorted(tree)]) for k in ("w", "b")},
            stacked_mlp,
        ),
    }

    def make_tx(layout, name, make):
        if layout != "tree + flatten":
            return make()
        return (gradtx.flatten if name.startswith("gradtx") else optax.flatten)(make())

    layouts["tree + flatten"] = layouts["per-leaf"]
    return {
        (layout, name): Step(make_tx(layout, name, make), params(), model, apply)
        for layout, (params, model) in layouts.items()
        for name, (make, apply) in OPTIMIZERS.items()
        if name in optimizers
    }


def table(leaves: int, rounds: int, optimizers=tuple(OPTIMIZERS), log=print) -> list[str]:
    steps = contenders(leaves // 2, optimizers)
    for s in steps.values():
        s.first_call()
    rng = np.random.default_rng(0)
    per = run.race_samples(steps, {}, rounds, rng, 0.1)
    lines = [
        f"{leaves} leaves ({leaves // 2} layers of {WIDTH}x{WIDTH} + bias), batch {BATCH}; "
        f"{rounds} interleaved rounds; load {os.getloadavg()[0]:.1f}",
        "",
        "| layout | optimizer | step ms | vs optax per-leaf [IQR] | trace s | lower s | "
        "compile s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (layout, name), s in steps.items():
        ref = "optax " + name.split()[1] if name.split()[1] in ("rprop", "rmsprop") else name
        q = paired_ratio(per[(layout, name)], per[("per-leaf", ref)])
        ms = 1e3 * statistics.median(per[(layout, name)])
        c = s.compile
        lines.append(
            f"| {layout} | {name} | {ms:.2f} | {q[1]:.2f} [{q[0]:.2f}-{q[2]:.2f}] | "
            f"{c[0]:.2f} | {c[1]:.2f} | {c[2]:.2f} |"
        )
    log("\n".join(lines))
    return lines


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 leaves, Rprop only, 5 rounds")
    ap.add_argument("--leaves", type=int, nargs="*", default=None)
    args = ap.parse_args(argv)
    leaf_counts = args.leaves or ([100] if args.quick else [100, 1000])
    out = []
    for n in leaf_counts:
        optimizers = ("gradtx rprop", "optax rprop") if args.quick else tuple(OPTIMIZERS)
        out += [*table(n, 5 if args.quick else 9, optimizers), ""]
    return out


if __name__ == "__main__":
    main()
