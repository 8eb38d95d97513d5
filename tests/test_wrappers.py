"""Wrappers against independent references: torch.optim run live (a learning rate changed
by hand or by an lr_scheduler), the optax counterparts wrapping the same inner transform,
the equivalent large-batch run, Dragon's documented sum_grad example, and the run with
the bad steps left out."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import gradtx
from tests import _tolerance as h
from tests._runners import run_gradtx, run_torch

RNG = np.random.default_rng(0)
A = RNG.standard_normal((32, 5))
B = RNG.standard_normal(32)


def grad_fn(params, rows=slice(None)):
    """Gradient of the mean squared error 0.5 * mean((A x + c - b)^2) over ``rows``."""
    a, b = A[rows], B[rows]
    r = a @ np.asarray(params["x"]) + np.asarray(params["c"]) - b
    return {"x": a.T @ r / len(b), "c": np.asarray(np.mean(r))}


def params0(dtype=np.float64):
    return {"x": np.linspace(-1, 1, 5).astype(dtype), "c": np.asarray(0.5, dtype)}


def run(tx, steps, dtype=np.float64, nudge=None, before_step=None):
    """``run_gradtx`` on this file's problem (``grad_fn`` is NumPy: on the host)."""
    grads = lambda p, t: grad_fn(p)  # noqa: E731
    return run_gradtx(
        tx, params0(dtype), grads, steps, host_grads=True, nudge=nudge, before_step=before_step
    )


def run_t(make_opt, steps, before_step=None):
    """``run_torch`` on this file's problem; ``make_opt([x, c])`` -> (opt, scheduler)."""
    return run_torch(
        lambda t: make_opt([t["x"], t["c"]]),
        params0(),
        lambda p, t: grad_fn(p),
        steps,
        before_step=before_step,
    )


def lr_at(t):
    return 0.05 * 0.97**t + 0.01 * (t % 3)


# --------------------------------------------------------------------------------------
# inject_hyperparams
# --------------------------------------------------------------------------------------


def test_changing_an_injected_learning_rate_retraces_once_and_matches_torch():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.05, momentum=0.9)
    # one trace of the jitted step for all 100 learning rates (a second raises)
    tx = gradtx.GradientTransformation(tx.init, chex.assert_max_traces(tx.update, n=1))
    new_lr = lambda state, t: gradtx.set_hyperparams(state, learning_rate=lr_at(t))  # noqa: E731
    ours, _ = run(tx, 100, before_step=new_lr)

    def set_lr(opt, t):
        for group in opt.param_groups:
            group["lr"] = lr_at(t)

    theirs = run_t(lambda p: (torch.optim.RMSprop(p, lr=0.05, momentum=0.9), None), 100, set_lr)
    assert h.scaled_error(ours, theirs) < 1e-13


@pytest.mark.parametrize(
    "name, make_schedule, lr_dtype",
    [
        # gradtx's and optax's schedules compute in float32 from the int32 count (optax's
        # numbers), so they match torch's float64 lr to float32 rounding ...
        ("gradtx", lambda: gradtx.exponential_decay(0.05, 1, decay_rate=0.9), np.float32),
        ("optax", lambda: optax.exponential_decay(0.05, 1, decay_rate=0.9), np.float32),
        # ... and any function of the count is accepted; this one computes in float64
        ("float64 fn", lambda: lambda count: 0.05 * 0.9 ** count.astype(jnp.float64), np.float64),
    ],
)
def test_scheduled_learning_rate_matches_torch_lr_scheduler(name, make_schedule, lr_dtype):
    """The params are float64 but the learning rates are rounded to ``lr_dtype``: the
    tolerance is what torch's own conditioning allows for that rounding, torch against
    torch with its initial learning rate one ``lr_dtype`` ulp up."""
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(
        learning_rate=make_schedule(), centered=True, weight_decay=1e-2
    )
    ours, state = run(tx, 30)

    def make(lr):
        def make_opt(p):
            opt = torch.optim.RMSprop(p, lr=lr, centered=True, weight_decay=1e-2)
            return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)

        return make_opt

    theirs = run_t(make(0.05), 30)
    nudged = run_t(make(float(h.nudge(lr_dtype(0.05)))), 30)
    prec = np.dtype(lr_dtype).name
    tol = h.tolerance(prec, 30, h.scaled_error(nudged, theirs))
    h.check("torch lr_scheduler.ExponentialLR", name, prec, h.scaled_error(ours, theirs), tol)
    assert int(state.count) == 30
    # the schedule's last value against the formula: 0.9**29 through float32 exp/log is
    # ~6 ulps off (float64: 0), a computation of its own, not a trajectory
    lr = state.hyperparams["learning_rate"]
    np.testing.assert_allclose(lr, 0.05 * 0.9**29, rtol=16 * h.eps(prec))


def test_same_numbers_and_layout_as_optax_inject_hyperparams():
    sched = optax.cosine_decay_schedule(0.1, 20)
    ours = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched, momentum=0.5)
    theirs = optax.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched, momentum=0.5)
    a, sa = run(ours, 20, dtype=np.float32)
    b, sb = run(theirs, 20, dtype=np.float32)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert sa._fields == ("count", "hyperparams", "inner_state")
    assert sa.hyperparams.keys() == sb.hyperparams.keys()
    assert all(v.dtype == jnp.float32 for v in sa.hyperparams.values())


def test_rprop_reads_the_learning_rate_once_like_torch():
    """torch.optim.Rprop reads lr only to seed each step size on the first step, so an
    lr_scheduler moves nothing afterwards; gradtx's rprop seeds Δ0 = schedule(0) at init
    and ignores later values the same way."""
    sched = gradtx.exponential_decay(0.02, transition_steps=1, decay_rate=0.5)
    injected, state = run(gradtx.inject_hyperparams(gradtx.rprop)(learning_rate=sched), 25)
    lr0 = float(sched(jnp.int32(0)))  # 0.02 rounded to float32, as the schedule computes it
    plain, _ = run(gradtx.rprop(learning_rate=lr0), 25)
    for x, y in zip(injected, plain):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.02 * 0.5**24)

    def make(p):
        opt = torch.optim.Rprop(p, lr=lr0)
        return opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)

    assert h.scaled_error(injected, run_t(make, 25)) == 0.0


def test_static_and_bool_arguments_pass_through_and_names_are_checked():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop, static_args="alpha")(0.1, 0.9, centered=True)
    state = tx.init(jax.tree.map(jnp.asarray, params0()))
    assert "alpha" not in state.hyperparams and "centered" not in state.hyperparams
    assert any(isinstance(s, gradtx.ScaleByRStdDevState) for s in state.inner_state)
    with pytest.raises(ValueError, match="static_args"):
        gradtx.inject_hyperparams(gradtx.rmsprop, static_args="nope")
    with pytest.raises(ValueError, match="learning_rat"):
        gradtx.set_hyperparams(state, learning_rat=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=-1.0)


def test_injected_clipping_threshold():
    tx = gradtx.inject_hyperparams(gradtx.clip_by_global_norm)(max_norm=1.0)
    g = {"x": jnp.array([3.0, 4.0])}
    state = tx.init(g)
    update = jax.jit(tx.update)
    u, state = update(g, state)
    np.testing.assert_allclose(u["x"], [0.6, 0.8])
    u, state = update(g, gradtx.set_hyperparams(state, max_norm=10.0))
    np.testing.assert_array_equal(u["x"], g["x"])


# --------------------------------------------------------------------------------------
# MultiSteps
# --------------------------------------------------------------------------------------


def test_k_micro_batches_equal_one_large_batch():
    k, steps = 4, 6
    inner = gradtx.rmsprop(0.02, momentum=0.9, centered=True, weight_decay=1e-3)
    acc = gradtx.MultiSteps(inner, k, reduce="mean")
    rows = [slice(8 * i, 8 * (i + 1)) for i in range(k)]

    big_p = jax.tree.map(jnp.asarray, params0())
    big_s = inner.init(big_p)
    p, s = big_p, acc.init(big_p)
    update = jax.jit(acc.update)
    for _ in range(steps):
        for i in range(k):
            g = jax.tree.map(jnp.asarray, grad_fn(p, rows[i]))
            u, s = update(g, s, p)
            if i < k - 1:
                assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(u))
                assert not acc.has_updated(s)
            p = gradtx.apply_updates(p, u)
        assert acc.has_updated(s)
        u, big_s = inner.update(jax.tree.map(jnp.asarray, grad_fn(big_p)), big_s, big_p)
        big_p = gradtx.apply_updates(big_p, u)
        chex.assert_trees_all_close((p, s.inner_opt_state), (big_p, big_s), rtol=1e-12, atol=1e-15)
    assert int(s.gradient_step) == steps


def test_sum_reproduces_dragons_sum_grad_example():
    """Dragon's Optimizer.sum_grad docs: x = ones(1); SGD(lr=0.1); per epoch, three times
    y = x + 1, y.backward(), sum_grad(); then step(). After two epochs x is 0.4."""
    tx = gradtx.MultiSteps(gradtx.scale_by_learning_rate(0.1), 3, reduce="sum")
    x = {"x": jnp.ones(1)}
    state = tx.init(x)
    for _ in range(2):
        for _ in range(3):
            g = jax.grad(lambda p: jnp.sum(p["x"] + 1))(x)
            u, state = tx.update(g, state, x)
            x = gradtx.apply_updates(x, u)
    np.testing.assert_allclose(x["x"], [0.4], rtol=1e-15)


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_same_numbers_as_optax_multisteps(reduce):
    k = 3
    inner = gradtx.rmsprop(0.02, momentum=0.5)
    ours = gradtx.MultiSteps(inner, k, reduce=reduce)
    theirs = optax.MultiSteps(inner, k, use_grad_mean=reduce == "mean")
    a, sa = run(ours, 12, dtype=np.float32)
    b, sb = run(theirs, 12, dtype=np.float32)
    nudged = [run(theirs, 12, dtype=np.float32, nudge=n)[0] for n in h.NUDGES]
    h.check_trajectories("optax.MultiSteps", reduce, a, b, nudged, 12)
    assert int(sa.gradient_step) == int(sb.gradient_step) == 4


def test_every_k_schedule_varies_the_batch_size():
    k_of = gradtx.piecewise_constant_schedule(1, {2: 3})  # k = 1, 1, then 3 from step 2
    tx = gradtx.MultiSteps(gradtx.scale(1.0), lambda step: k_of(step).astype(jnp.int32))
    g = {"x": jnp.ones(2)}
    state = tx.init(g)
    emitted = []
    for _ in range(8):
        u, state = jax.jit(tx.update)(g, state)
        emitted.append(float(u["x"][0]))
    assert emitted == [1, 1, 0, 0, 1, 0, 0, 1]


def test_multisteps_bad_arguments():
    with pytest.raises(ValueError, match="reduce"):
        gradtx.MultiSteps(gradtx.scale(1.0), 2, reduce="max")
    with pytest.raises(ValueError, match="every_k_schedule"):
        gradtx.MultiSteps(gradtx.scale(1.0), 0)


# --------------------------------------------------------------------------------------
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


FACTORIES = [
    (
        gradtx.rmsprop,
        dict(
            learning_rate=0.02, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.5, centered=True
        ),
    ),
    (gradtx.rprop, dict(learning_rate=0.02, etas=(0.4, 1.3), step_sizes=(1e-4, 1.0))),
    (
        gradtx.scale_by_rprop,
        dict(
            learning_rate=0.02, eta_minus=0.4, eta_plus=1.3, min_step_size=1e-4, max_step_size=1.0
        ),
    ),
    (gradtx.scale_by_rms, dict(decay=0.8, eps=1e-6, initial_scale=0.1, bias_correction=True)),
    (gradtx.scale_by_stddev, dict(decay=0.8, eps=1e-6, eps_in_sqrt=False)),
    (gradtx.trace, dict(decay=0.7, nesterov=True)),
    (gradtx.add_decayed_weights, dict(weight_decay=0.3)),
    (gradtx.scale, dict(step_size=-0.5)),
    (gradtx.scale_by_learning_rate, dict(learning_rate=0.1)),
    (gradtx.clip, dict(max_delta=0.05)),
    (gradtx.clip_by_block_norm, dict(max_norm=0.1)),
    (gradtx.clip_by_block_rms, dict(threshold=0.1)),
    (gradtx.clip_by_global_norm, dict(max_norm=0.1)),
]


@pytest.mark.parametrize("factory, kwargs", FACTORIES, ids=lambda x: getattr(x, "__name__", ""))
def test_every_transform_accepts_injected_hyperparameters(factory, kwargs):
    """Injected as arrays (traced under jit), the numbers are those of the plain transform."""
    injected, state = run(gradtx.inject_hyperparams(factory)(**kwargs), 6)
    plain, _ = run(factory(**kwargs), 6)
    assert h.scaled_error(injected, plain) < 1e-15
    numeric = {k for k, v in kwargs.items() if isinstance(v, float)}
    assert numeric <= set(state.hyperparams)


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
    u, _ = jax.vmap(lambda g: tx.update(g, tx.init(p), p))(batched_g)
    first, _ = tx.update(gs[0], tx.init(p), p)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], u), first, rtol=1e-14, atol=0)


def test_set_hyperparams_returns_a_copy():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    state = tx.init(jax.tree.map(jnp.asarray, params0(np.float32)))
    new = gradtx.set_hyperparams(state, learning_rate=0.5)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1)
    assert new.hyperparams["learning_rate"].dtype == jnp.float32
    assert float(new.hyperparams["learning_rate"]) == 0.5


def test_factories_with_star_args_pass_them_through():
    tx = gradtx.inject_hyperparams(gradtx.chain)(gradtx.scale(2.0), gradtx.clip(0.5))
    g = {"x": jnp.asarray([0.1, 1.0])}
    u, state = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_array_equal(u["x"], [0.2, 0.5])
    assert state.hyperparams == {}
