"""A flax TrainState loop driven by a gradtx transform, with the composition toolkit.

Run: python examples/flax_train_state.py   (needs flax: pip install flax)

The optimizer, built from gradtx blocks, is what a torch user would write as
``RMSprop(param_groups, momentum=0.9)`` + ``clip_grad_norm_`` + an ``lr_scheduler`` +
gradient accumulation:

* clip the global gradient norm to 1,
* RMSprop with a warm-up + cosine learning-rate schedule, injected so it lives in the
  state (and could be overridden there without recompiling),
* weight decay on the kernels but not on the biases (a param group),
* gradients of 2 micro-batches accumulated per step (``MultiSteps``),
* a checkpoint saved halfway, restored and continued.
"""

from __future__ import annotations

import os
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training import train_state

import gradtx


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jnp.tanh(nn.Dense(32)(x))
        x = jnp.tanh(nn.Dense(32)(x))
        return nn.Dense(1)(x)


def make_data(key, n=512):
    kx, kn = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 1), minval=-2.0, maxval=2.0)
    return x, jnp.sin(3 * x) + 0.5 * x**2 + 0.05 * jax.random.normal(kn, (n, 1))


def is_kernel(params):
    """The decay mask: True for kernels, False for biases (flax names them so)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def make_optimizer(total_steps: int) -> gradtx.GradientTransformation:
    schedule = gradtx.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=3e-3, warmup_steps=20, decay_steps=total_steps
    )
    step = gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.add_decayed_weights(1e-4, mask=is_kernel),  # L2, kernels only
        gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=schedule, momentum=0.9),
    )
    return gradtx.MultiSteps(step, every_k_schedule=2)  # mean of 2 micro-batches per step


def main(micro_steps: int = 600, batch: int = 64) -> None:
    key = jax.random.PRNGKey(0)
    x, y = make_data(key)
    model = MLP()
    params = model.init(jax.random.PRNGKey(1), x[:1])["params"]
    tx = make_optimizer(total_steps=micro_steps // 2)
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    @jax.jit
    def train_step(state, xb, yb):
        def loss_fn(p):
            return jnp.mean((state.apply_fn({"params": p}, xb) - yb) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    def batches(start):
        for i in range(start, micro_steps):
            j = (i * batch) % x.shape[0]
            yield i, x[j : j + batch], y[j : j + batch]

    half = micro_steps // 2
    for i, xb, yb in batches(0):
        if i == half:
            break
        state, loss = train_step(state, xb, yb)
        if i % 100 == 0:
            print(f"micro-step {i:4d}  loss {float(loss):.4f}")

    # checkpoint: params and optimizer state, then restore into a fresh TrainState
    path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    gradtx.save_checkpoint(path, {"params": state.params, "opt_state": state.opt_state})
    fresh = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    restored = gradtx.restore_checkpoint(
        path, {"params": fresh.params, "opt_state": fresh.opt_state}
    )
    state = fresh.replace(step=state.step, **restored)
    lr = state.opt_state.inner_opt_state[2].hyperparams["learning_rate"]
    print(f"restored at micro-step {half} (learning rate {float(lr):.2e}); continuing")

    for i, xb, yb in batches(half):
        state, loss = train_step(state, xb, yb)
        if i % 100 == 0 or i == micro_steps - 1:
            print(f"micro-step {i:4d}  loss {float(loss):.4f}")
    print(
        f"summary: {micro_steps} micro-steps, resumed from a checkpoint at {half}; "
        f"last batch loss {float(loss):.4f}"
    )


if __name__ == "__main__":
    main()
