"""Loss against steps: gradtx next to torch.optim and optax, on one problem.

Run: python examples/compare.py   (needs optax and torch: pip install torch==2.13.0 and
pip install -e ".[test]"; for the plot, pip install -e ".[plot]")

The quickstart's network and data, full batch, 300 steps from the same initial weights:
the four Rprop variants of gradtx.rprop, torch.optim.Rprop and optax.rprop; then
gradtx.rmsprop, torch.optim.RMSprop and optax.rmsprop with torch's settings
(lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9, centered). Prints the final losses, saves
the curves as examples/compare.png, and ends with a summary line.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import torch
from _plot import save_curves
from quickstart import init_mlp, loss_fn, make_data

import gradtx

STEPS = 300


def run_jax(tx, params, x, y):
    """Full-batch training with a gradtx or optax transform; the loss at every step."""
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(STEPS):
        params, opt_state, loss = step(params, opt_state)
        losses.append(loss)
    return [float(v) for v in losses]


def run_torch(make_optimizer, params, x, y):
    """The same network and data in torch, from the same initial weights."""
    layers = [
        {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in layer.items()}
        for layer in params
    ]
    xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))
    opt = make_optimizer([t for layer in layers for t in layer.values()])
    losses = []
    for _ in range(STEPS):
        h = xt
        for layer in layers[:-1]:
            h = torch.tanh(h @ layer["w"] + layer["b"])
        loss = torch.mean((h @ layers[-1]["w"] + layers[-1]["b"] - yt) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    key_data, key_model = jax.random.split(jax.random.PRNGKey(0))
    x, y = make_data(key_data)
    params = init_mlp(key_model)

    rprop = {
        f"gradtx {v}": run_jax(gradtx.rprop(variant=v), params, x, y) for v in gradtx.RPROP_VARIANTS
    }
    rprop["torch.optim.Rprop"] = run_torch(torch.optim.Rprop, params, x, y)
    rprop["optax.rprop"] = run_jax(optax.rprop(1e-2), params, x, y)

    torch_rms = dict(lr=1e-3, alpha=0.99, eps=1e-8, momentum=0.9)
    rms = {
        "gradtx.rmsprop": run_jax(gradtx.rmsprop(1e-3, momentum=0.9), params, x, y),
        "torch.optim.RMSprop": run_torch(
            lambda p: torch.optim.RMSprop(p, **torch_rms), params, x, y
        ),
        "optax.rmsprop": run_jax(
            optax.rmsprop(
                1e-3, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=True, momentum=0.9
            ),
            params,
            x,
            y,
        ),
    }
    for name, losses in {**rprop, **rms}.items():
        print(f"  {name:22s} loss after {STEPS} steps {losses[-1]:.5f}")
    save_curves(__file__, {"Rprop, full batch": rprop, "RMSprop, full batch": rms})
    gap_rprop = abs(rprop["gradtx irprop-"][-1] - rprop["torch.optim.Rprop"][-1])
    gap_rms = abs(rms["gradtx.rmsprop"][-1] - rms["torch.optim.RMSprop"][-1])
    best = min(rprop, key=lambda k: rprop[k][-1])
    print(
        f"summary: lowest Rprop loss {best} {rprop[best][-1]:.5f}; final loss gradtx vs torch: "
        f"Rprop {gap_rprop:.1e} apart, RMSprop {gap_rms:.1e} apart"
    )


if __name__ == "__main__":
    main()
