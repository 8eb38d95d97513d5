"""Eager (un-jitted) updates: the first call, which compiles, and the median of 30
later calls, for a few transforms on an MLP's eight leaves of eight shapes (float32,
784-256-128-64-10). ``python -m benchmarks.eager``; docs/performance.md, "Eager
updates", has the numbers."""

from __future__ import annotations

import statistics
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
}


def main() -> None:
    rng = np.random.default_rng(0)
    params = {f"p{i}": jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(SHAPES)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    print("| transform | first call | later calls (median of 30) |\n|---|---|---|")
    for name, make in TRANSFORMS.items():
        tx = make()
        state = tx.init(params)
        start = time.perf_counter()
        jax.block_until_ready(tx.update(grads, state, params))
        first = time.perf_counter() - start
        times = []
        for _ in range(30):
            start = time.perf_counter()
            updates, state = tx.update(grads, state, params)
            jax.block_until_ready((updates, state))
            times.append(time.perf_counter() - start)
        print(f"| `{name}` | {first * 1e3:.0f} ms | {statistics.median(times) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
