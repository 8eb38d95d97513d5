"""Fit with the ecosystem: gradtx transforms inside optax.chain and optax transforms
inside gradtx.chain (same numbers as the all-optax / all-gradtx chains), a flax
TrainState and nnx.Optimizer driven by a gradtx transform (same numbers as a hand-written
loop), and jax.grad through RMSprop's update (meta-learning a learning rate) against
central finite differences in float64."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradtx

RNG = np.random.default_rng(2)
X = jnp.asarray(RNG.standard_normal((16, 3)))
Y = jnp.asarray(RNG.standard_normal((16, 1)))


def loss_fn(p):
    h = jnp.tanh(X @ p["w1"] + p["b1"])
    return 0.5 * jnp.mean((h @ p["w2"] - Y) ** 2)


def params0(dtype=jnp.float32):
    return _params0(jnp.dtype(dtype))


@functools.cache
def _params0(dtype):
    """One program per dtype (not a program per eager op), drawn once: the same draws."""

    @jax.jit
    def draw():
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        return {
            "w1": jax.random.normal(k1, (3, 4), dtype),
            "b1": jnp.zeros(4, dtype),
            "w2": jax.random.normal(k2, (4, 1), dtype) * 0.5,
        }

    return draw()


def train(tx, steps=10, dtype=jnp.float32, with_value=False):
    p = params0(dtype)
    s = jax.jit(tx.init)(p)  # one program, not one per eager op of the init

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p, **({"value": loss} if with_value else {}))
        return optax.apply_updates(p, u), s

    for _ in range(steps):
        p, s = step(p, s)
    return p, s


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_gradtx_inside_optax_chain():
    ours = gradtx.chain(gradtx.clip_by_global_norm(0.5), gradtx.rmsprop(1e-2, momentum=0.9))
    mixed = optax.chain(optax.clip_by_global_norm(0.5), gradtx.rmsprop(1e-2, momentum=0.9))
    (p, s), (q, r) = train(ours), train(mixed)
    _equal(p, q)
    _equal(s, r)
    # rprop's sign rule as an optax block, and optax's schedules as gradtx's learning rate
    tx = optax.chain(gradtx.scale_by_rprop(1e-2), optax.scale(-1.0))
    _equal(train(tx)[0], train(gradtx.rprop(1e-2))[0])


def test_optax_inside_gradtx_chain():
    # optax's blocks make torch's RMSprop here: optax multiplies by 1/(sqrt(nu)+eps) where
    # gradtx divides, so the two agree to rounding, not bit for bit
    mixed = gradtx.chain(
        optax.scale_by_rms(decay=0.99, eps=1e-8, eps_in_sqrt=False),
        optax.trace(decay=0.9),
        gradtx.scale_by_learning_rate(1e-2),
    )
    p, _ = train(mixed, dtype=jnp.float64)
    q, _ = train(gradtx.rmsprop(1e-2, momentum=0.9), dtype=jnp.float64)
    chex.assert_trees_all_close(p, q, rtol=1e-12, atol=0)
    # the same optax blocks in optax.chain and gradtx.chain: the same bits
    blocks = [optax.clip(0.2), optax.scale_by_adam(), gradtx.clip_by_block_norm(0.1)]
    _equal(train(gradtx.chain(*blocks))[0], train(optax.chain(*blocks))[0])


def test_extra_args_reach_optax_blocks_through_gradtx_chain():
    plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=1, accumulation_size=1)
    ours = gradtx.chain(gradtx.rmsprop(5e-2), plateau)
    theirs = optax.chain(gradtx.rmsprop(5e-2), plateau)
    (p, s), (q, r) = train(ours, 30, with_value=True), train(theirs, 30, with_value=True)
    _equal(p, q)
    assert float(s[1].scale) == float(r[1].scale) < 1.0  # the plateau was seen


def test_meta_gradient_of_the_learning_rate_matches_finite_differences():
    """d loss(params after K RMSprop steps) / d lr, through every update."""
    p0 = params0(jnp.float64)

    def unroll(tx, p, s, steps=6):
        def body(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss_fn)(p), s, p)
            return (gradtx.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (p, s), None, length=steps)
        return loss_fn(p)

    def final_loss(lr):
        tx = gradtx.rmsprop(lr, alpha=0.9, momentum=0.9, centered=True, weight_decay=1e-2)
        return unroll(tx, p0, tx.init(p0))

    lr, h = 0.01, 1e-5
    # the same derivative, taken with respect to the injected hyperparameter in the state
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(
        learning_rate=lr, alpha=0.9, momentum=0.9, centered=True, weight_decay=1e-2
    )

    def via_state(lr_value):
        s = tx.init(p0)
        s = s._replace(hyperparams={**s.hyperparams, "learning_rate": lr_value})
        return unroll(tx, p0, s)

    # both derivatives are gradtx's (no reference among them): one program computes them
    exact, injected = jax.jit(lambda a, b: (jax.grad(final_loss)(a), jax.grad(via_state)(b)))(
        lr, jnp.float64(lr)
    )
    f = jax.jit(final_loss)
    # fourth-order central differences: error O(h^4) ~ 1e-10 relative here (the loss is
    # strongly curved in lr: RMSprop's first steps divide by tiny averages); float64
    # scalars combined in Python: the same roundings as the eager ops, with no programs
    fm2, fm1, fp1, fp2 = (float(f(lr + k * h)) for k in (-2, -1, 1, 2))
    central = (-fp2 + 8 * fp1 - 8 * fm1 + fm2) / (12 * h)
    assert abs(float(exact) - central) <= 1e-8 * abs(central)
    np.testing.assert_allclose(injected, exact, rtol=1e-12)


def test_flax_train_state_and_nnx_optimizer_take_gradtx_transforms():
    from flax import nnx  # flax is in the [test] extra: a missing install fails here
    from flax.training import train_state

    tx = gradtx.rmsprop(1e-2, momentum=0.9)
    want, _ = train(tx, 5)

    state = train_state.TrainState.create(apply_fn=None, params=params0(), tx=tx)
    step = jax.jit(lambda st: st.apply_gradients(grads=jax.grad(loss_fn)(st.params)))
    for _ in range(5):
        state = step(state)
    _equal(state.params, want)
    assert int(state.step) == 5

    class Model(nnx.Module):
        def __init__(self):
            p = params0()
            self.w1, self.b1, self.w2 = nnx.Param(p["w1"]), nnx.Param(p["b1"]), nnx.Param(p["w2"])

        def params(self):
            return {"w1": self.w1[...], "b1": self.b1[...], "w2": self.w2[...]}

    model = Model()
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, opt):
        grads = nnx.grad(lambda m: loss_fn(m.params()))(model)
        opt.update(model, grads)

    for _ in range(5):
        nnx_step(model, opt)
    _equal(model.params(), want)
