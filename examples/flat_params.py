"""Many small layers: hold the params in one flat buffer that the model slices from.

Run: python examples/flat_params.py

A deep residual MLP of 200 small layers has 400 param leaves. Kept as a tree, every
train step runs the optimizer's kernels once per leaf (and the backward pass writes 400
gradient buffers). Held flat (``jax.flatten_util.ravel_pytree``), the model cuts its
layers out of one vector with ``unravel`` inside the loss, the backward pass builds one
flat gradient, and the optimizer runs one kernel per step. ``gradtx.flatten`` (optax's
``flatten``) is then free: raveling a flat vector is a reshape; it lets the same code
take a tree too. Both layouts train to the same numbers (Rprop is elementwise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import gradtx

DEPTH, WIDTH = 200, 16


def init(key):
    keys = jax.random.split(key, DEPTH)
    return [
        {"w": jax.random.normal(k, (WIDTH, WIDTH)) / WIDTH, "b": jnp.zeros(WIDTH)} for k in keys
    ]


def model(layers, x):
    for layer in layers:
        x = x + jnp.tanh(x @ layer["w"] + layer["b"])
    return x


def train(params, loss, steps=50):
    tx = gradtx.flatten(gradtx.rprop(learning_rate=1e-3))

    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, value

    step = jax.jit(step, donate_argnums=(0, 1))
    state = tx.init(params)
    for _ in range(steps):
        params, state, value = step(params, state)
    return params, float(value)


def main():
    kx, kp = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (64, WIDTH))
    y = jnp.sin(x)
    tree = init(kp)
    flat, unravel = ravel_pytree(tree)  # one float32 vector, and the way back

    def tree_loss(layers):
        return jnp.mean((model(layers, x) - y) ** 2)

    def flat_loss(flat):
        return tree_loss(unravel(flat))  # the model slices its layers from the buffer

    print(f"{len(jax.tree.leaves(tree))} leaves, {flat.size} params")
    _, loss_tree = train(tree, tree_loss)
    trained, loss_flat = train(flat, flat_loss)
    print(f"loss after 50 steps: tree {loss_tree:.6f}, flat {loss_flat:.6f}")
    layers = unravel(trained)  # back to a tree, e.g. to save or inspect
    print("first layer's bias:", layers[0]["b"][:3])


if __name__ == "__main__":
    main()
