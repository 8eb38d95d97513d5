"""apply_if_finite (gradtx/_wrappers.py) against optax.apply_if_finite and against the
run with the bad steps left out; centered RMSprop's variance clamp; every wrapper under
jit, vmap and without mutation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests.least_squares import grad_fn, params0

# apply_if_finite, and centered RMSprop's clamp
# --------------------------------------------------------------------------------------


def _poison(bad_steps):
    def before(state, t):
        return state

    def grads(t, params):
        g = jax.tree.map(jnp.asarray, grad_fn(params))
        if t in bad_steps:
            g = {"x": g["x"].at[1].set(jnp.nan if t % 2 else jnp.inf), "c": g["c"]}
        return g

    return grads


def _run_with_grads(tx, grads_at, steps):
    params = jax.tree.map(jnp.asarray, params0())
    state = tx.init(params)
    step = jax.jit(
        lambda p, s, g: (lambda u, s: (gradtx.apply_updates(p, u), s))(*tx.update(g, s, p))
    )
    out = []
    for t in range(steps):
        params, state = step(params, state, grads_at(t, params))
        out.append((params, state))
    return out


def test_apply_if_finite_skips_bad_steps_like_optax_and_like_leaving_them_out():
    inner = gradtx.rmsprop(0.05, momentum=0.9)
    bad = {2, 5, 6}
    grads = _poison(bad)
    ours = _run_with_grads(gradtx.apply_if_finite(inner, 2), grads, 10)
    theirs = _run_with_grads(optax.apply_if_finite(inner, 2), grads, 10)
    for (p, s), (q, r) in zip(ours, theirs):
        for x, y in zip(jax.tree.leaves((p, s)), jax.tree.leaves((q, r))):
            np.testing.assert_array_equal(x, y)
    # the reference: the same inner run on the good steps only
    params = jax.tree.map(jnp.asarray, params0())
    state = inner.init(params)
    for t in range(10):
        if t not in bad:
            u, state = inner.update(grads(t, params), state, params)
            params = gradtx.apply_updates(params, u)
        for x, y in zip(
            jax.tree.leaves((params, state)), jax.tree.leaves((ours[t][0], ours[t][1].inner_state))
        ):
            np.testing.assert_allclose(x, y, rtol=1e-12)  # eager vs jit rounding
    last = ours[-1][1]
    assert int(last.total_notfinite) == 3 and int(last.notfinite_count) == 0
    assert bool(last.last_finite)


def test_apply_if_finite_gives_up_after_too_many_in_a_row():
    grads = _poison(set(range(2, 10)))
    run = _run_with_grads(gradtx.apply_if_finite(gradtx.rmsprop(0.05), 2), grads, 6)
    counts = [int(s.notfinite_count) for _, s in run]
    assert counts == [0, 0, 1, 2, 3, 4]
    finite = [bool(np.all(np.isfinite(p["x"]))) for p, _ in run]
    assert finite == [True, True, True, True, False, False]  # 3rd bad step in a row goes through
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        gradtx.apply_if_finite(gradtx.scale(1.0), -1)


def test_centered_rmsprop_clamp_variance():
    """Constant gradients: v_t - mean_t^2 = a^t (1 - a^t) g^2 in exact arithmetic, which
    rounds to a tiny negative number in float32 for some steps; torch (and gradtx by
    default) then takes sqrt of a negative: NaN. clamp_variance=True never does."""
    g = np.float32(0.3)  # with alpha = 0.5, torch 2.13 hits NaN at step 24
    steps = 30
    p0 = torch.zeros(1, requires_grad=True)
    opt = torch.optim.RMSprop([p0], lr=0.01, alpha=0.5, centered=True)
    torch_nan = []
    for _ in range(steps):
        p0.grad = torch.tensor([g])
        opt.step()
        torch_nan.append(bool(torch.isnan(p0).any()))
    assert any(torch_nan), "no cancellation in this case: pick another gradient"

    def run(**kw):
        tx = gradtx.rmsprop(0.01, alpha=0.5, centered=True, **kw)
        p = {"p": jnp.zeros(1, jnp.float32)}
        s = tx.init(p)
        out = []
        for _ in range(steps):
            u, s = tx.update({"p": jnp.full(1, g)}, s, p)
            p = gradtx.apply_updates(p, u)
            out.append(bool(jnp.isnan(p["p"]).any()))
        return out, p

    parity, _ = run()
    assert parity == torch_nan
    clamped, p = run(clamp_variance=True)
    assert not any(clamped) and np.isfinite(p["p"]).all()
    with pytest.raises(ValueError, match="clamp_variance"):
        gradtx.rmsprop(clamp_variance=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1, momentum=0.9),
        lambda: gradtx.MultiSteps(gradtx.rmsprop(0.1), 2),
        lambda: gradtx.apply_if_finite(gradtx.rprop(), 1),
    ],
)
def test_wrappers_jit_eager_agree_vmap_and_do_not_mutate(make):
    tx = make()
    p = jax.tree.map(jnp.asarray, params0())
    gs = [jax.tree.map(jnp.asarray, grad_fn(p, slice(i, i + 8))) for i in range(3)]
    s_eager = s_jit = tx.init(p)
    update = jax.jit(tx.update)
    for g in gs:
        u_eager, s_eager = tx.update(g, s_eager, p)
        u_jit, s_jit = update(g, s_jit, p)
        chex.assert_trees_all_close((u_eager, s_eager), (u_jit, s_jit), rtol=1e-14, atol=0)
    # a batch of independent problems
    batched_g = jax.tree.map(lambda *x: jnp.stack(x), *gs)
    u, _ = jax.jit(jax.vmap(lambda g: tx.update(g, tx.init(p), p)))(batched_g)
    first, _ = tx.update(gs[0], tx.init(p), p)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], u), first, rtol=1e-14, atol=0)
