"""Eager (un-jitted) use: ``init``, the first ``update`` (both compile) and the median of
30 later updates, for a few transforms on an MLP's eight leaves of eight shapes
(float32, 784-256-128-64-10), and the first and a later read of Rprop's step sizes.
Each transform in a fresh process (what compiled for one would be reused by the next).
``python -m benchmarks.eager``; docs/performance.md, "Eager updates", has the numbers."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradtx

SHAPES = [(784, 256), (256,), (256, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
TRANSFORMS = {
    "rmsprop(momentum=0.9, centered=True)": lambda: gradtx.rmsprop(
        1e-3, momentum=0.9, centered=True
    ),
    "rprop()": lambda: gradtx.rprop(1e-3),
    "scale_by_rms()": lambda: gradtx.scale_by_rms(),
    "inject_hyperparams(rmsprop)(learning_rate=a schedule, momentum=0.9, centered=True)": lambda: (
        gradtx.inject_hyperparams(gradtx.rmsprop)(
            learning_rate=gradtx.linear_schedule(1e-3, 1e-4, 100), momentum=0.9, centered=True
        )
    ),
}


def _timed(f):
    start = time.perf_counter()
    out = jax.block_until_ready(f())
    return out, (time.perf_counter() - start) * 1e3


def one(name: str) -> str:
    rng = np.random.default_rng(0)
    params = {f"p{i}": jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(SHAPES)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    tx = TRANSFORMS[name]()
    state, init = _timed(lambda: tx.init(params))
    (_, state), first = _timed(lambda: tx.update(grads, state, params))
    times = []
    for _ in range(30):
        (_, state), ms = _timed(lambda state=state: tx.update(grads, state, params))
        times.append(ms)
    row = f"| `{name}` | {init:.0f} ms | {first:.0f} ms | {statistics.median(times):.2f} ms |"
    if name == "rprop()":
        _, read = _timed(lambda: gradtx.rprop_step_sizes(state))
        _, again = _timed(lambda: gradtx.rprop_step_sizes(state))
        row += f"\n`rprop_step_sizes(state)`: first read {read:.0f} ms, later {again:.2f} ms"
    return row


def main() -> None:
    print("| transform | init | first update | later updates (median of 30) |")
    print("|---|---|---|---|")
    notes = []
    for name in TRANSFORMS:
        run = [sys.executable, "-m", "benchmarks.eager", name]
        row, *more = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split(
            "\n"
        )
        print(row)
        notes += [m for m in more if m]
    print("\n".join(["", *notes]))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(one(sys.argv[1]))
    else:
        main()
