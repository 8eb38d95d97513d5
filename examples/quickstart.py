"""Fit a small MLP on data generated here, with a jitted, donated train step.

Run: python examples/quickstart.py
Trains once with gradtx.rprop() (full batch, as Rprop is meant for) and once with
gradtx.rmsprop(momentum=0.9, centered=True) (mini-batches), printing the loss, and ends
with a summary line: the full-batch loss each optimizer reached. With matplotlib
(pip install -e ".[plot]") it also saves the loss curves as examples/quickstart.png.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from _plot import save_curves

import gradtx


def make_data(key, n=512):
    """y = sin(3x) + 0.5 x^2 + noise, for x in [-2, 2]."""
    kx, kn = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 1), minval=-2.0, maxval=2.0)
    y = jnp.sin(3 * x) + 0.5 * x**2 + 0.05 * jax.random.normal(kn, (n, 1))
    return x, y


def init_mlp(key, sizes=(1, 32, 32, 1)):
    params = []
    for k, (m, n) in zip(jax.random.split(key, len(sizes) - 1), itertools.pairwise(sizes)):
        params.append({"w": jax.random.normal(k, (m, n)) / jnp.sqrt(m), "b": jnp.zeros(n)})
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, x, y):
    return jnp.mean((mlp(params, x) - y) ** 2)


def fit(tx, params, batches, steps, log_every):
    opt_state = tx.init(params)

    # Donating params and state lets XLA update them in place (see the docs: Performance).
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return gradtx.apply_updates(params, updates), opt_state, loss

    losses = []  # kept on the device: reading one each step would wait for it
    for step in range(steps):
        x, y = batches(step)
        params, opt_state, loss = train_step(params, opt_state, x, y)
        losses.append(loss)
        if step % log_every == 0 or step == steps - 1:
            print(f"  step {step:4d}  loss {float(loss):.5f}")
    return params, [float(v) for v in losses]


def main():
    key_data, key_model = jax.random.split(jax.random.PRNGKey(0))
    x, y = make_data(key_data)
    params0 = init_mlp(key_model)
    print(f"initial loss {float(loss_fn(params0, x, y)):.5f}")

    print("gradtx.rprop(), full batch:")
    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731  (the step donates its input)
    p_rprop, rprop_losses = fit(
        gradtx.rprop(), copy(params0), lambda s: (x, y), steps=300, log_every=50
    )

    print("gradtx.rmsprop(learning_rate=1e-3, momentum=0.9, centered=True), batches of 64:")

    def batches(step):
        i = (step * 64) % x.shape[0]
        return x[i : i + 64], y[i : i + 64]

    tx = gradtx.rmsprop(learning_rate=1e-3, momentum=0.9, centered=True)
    p_rms, rms_losses = fit(tx, copy(params0), batches, steps=600, log_every=100)

    curves = {
        "gradtx.rprop() (full batch)": rprop_losses,
        "gradtx.rmsprop(...) (batches of 64)": rms_losses,
    }
    save_curves(__file__, {"a 1-32-32-1 MLP on sin(3x) + x^2/2": curves})
    full_rprop, full_rms = float(loss_fn(p_rprop, x, y)), float(loss_fn(p_rms, x, y))
    print(f"summary: full-batch loss  rprop {full_rprop:.5f}  rmsprop {full_rms:.5f}")


if __name__ == "__main__":
    main()
