"""Data-parallel training on 8 simulated CPU devices, with a donated train step.

Run: python examples/data_parallel.py

The batch is split over a 1-D device mesh ("data"); params and optimizer state are
replicated. Inside the jitted step, ``jax.grad`` of the mean loss over the sharded batch
makes XLA average the gradients across devices (an all-reduce), and every device then
applies the same gradtx update to its replica. Nothing in gradtx is specific to this:
the state follows the params' sharding, so the same code runs FSDP-style by sharding
the params instead (see the docs: Scaling), and on several hosts after
``jax.distributed.initialize()`` (``examples/multiprocess.py`` runs two processes).
"""

from __future__ import annotations

import os

# Simulated devices must be requested before jax starts; a real multi-device machine
# needs nothing here.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import functools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx


def init_mlp(key, sizes=(8, 64, 64, 1)):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros(n)}
        for k, m, n in zip(keys, sizes[:-1], sizes[1:])
    ]


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)


def make_data(key, n):
    """y = sin(sum of x) + noise, x in R^8."""
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (n, 8))
    return x, jnp.sin(x.sum(axis=1, keepdims=True)) + 0.05 * jax.random.normal(kn, (n, 1))


def main(steps: int = 300, batch: int = 256):
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    print(
        f"{jax.device_count()} devices: batch of {batch} split {batch // jax.device_count()}"
        " per device; params and state replicated"
    )

    tx = gradtx.rmsprop(learning_rate=3e-3, momentum=0.9, centered=True)
    params = jax.device_put(init_mlp(jax.random.PRNGKey(0)), replicated)
    opt_state = jax.jit(tx.init)(params)  # state comes out with the params' sharding

    # Donating params and state lets XLA update them in place (see the docs: Performance).
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)  # grads: all-reduced mean
        updates, opt_state = tx.update(grads, opt_state, params)
        return gradtx.apply_updates(params, updates), opt_state, loss

    x_all, y_all = make_data(jax.random.PRNGKey(1), 16 * batch)
    for step in range(steps):
        i = (step % 16) * batch
        x, y = jax.device_put((x_all[i : i + batch], y_all[i : i + batch]), split)
        params, opt_state, loss = train_step(params, opt_state, x, y)
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step:4d}  loss {float(loss):.5f}")

    w = params[0]["w"]
    print(
        f"summary: {jax.device_count()} devices; params replicated: "
        f"{w.sharding.is_fully_replicated}, state sharding "
        f"{jax.tree.leaves(opt_state)[1].sharding.spec}; full-data loss "
        f"{float(loss_fn(params, x_all, y_all)):.5f}"
    )


if __name__ == "__main__":
    main()
