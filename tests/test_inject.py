"""inject_hyperparams and set_hyperparams (gradtx/_inject.py) against independent
references: torch.optim run live (a learning rate changed by hand or by an lr_scheduler),
optax.inject_hyperparams wrapping the same inner transform, and the plain transform."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from tests import _tolerance as h
from tests.least_squares import params0, run, run_t


def lr_at(t):
    return 0.05 * 0.97**t + 0.01 * (t % 3)


# --------------------------------------------------------------------------------------
# inject_hyperparams
# --------------------------------------------------------------------------------------


def test_changing_an_injected_learning_rate_retraces_once_and_matches_torch():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.05, momentum=0.9)
    # one trace of the jitted step for all 100 learning rates (a second raises)
    chex.clear_trace_counter()  # chex counts per function code, across tests
    tx = gradtx.GradientTransformation(tx.init, chex.assert_max_traces(tx.update, n=1))
    new_lr = lambda state, t: gradtx.set_hyperparams(state, learning_rate=lr_at(t))  # noqa: E731
    ours, _ = run(tx, 100, before_step=new_lr)

    def set_lr(opt, t):
        for group in opt.param_groups:
            group["lr"] = lr_at(t)

    make_opt = lambda p: (torch.optim.RMSprop(p, lr=0.05, momentum=0.9), None)  # noqa: E731
    theirs = run_t(make_opt, 100, set_lr)
    nudged = [run_t(make_opt, 100, set_lr, nudge=n) for n in h.NUDGES]
    h.check_trajectories(
        "torch.optim.RMSprop (inject)", "lr set by hand", ours, theirs, nudged, 100
    )


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


# ---------------------------------------------------------------------------------------
# Edges of ``inject_hyperparams`` / ``set_hyperparams`` (``gradtx/_inject.py``): clear
# refusals instead of internal errors, and states a donated step accepts.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        gradtx.rmsprop().init({"w": jnp.ones(2)}),
        gradtx.scale_by_rms().init({"w": jnp.ones(2)}),
        (),
        None,
        {"hyperparams": {"learning_rate": 1.0}},
    ],
    ids=["chain", "namedtuple", "empty", "none", "dict"],
)
def test_set_hyperparams_refuses_other_states(state):
    with pytest.raises(TypeError, match="set_hyperparams needs the state of an inject_"):
        gradtx.set_hyperparams(state, learning_rate=1.0)


def test_set_hyperparams_names_a_nested_injected_state():
    inner = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    tx = gradtx.chain(gradtx.scale(1.0), inner)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(TypeError, match=r"holds one at state\[1\]: pass that one"):
        gradtx.set_hyperparams(state, learning_rate=1.0)
    fixed = (state[0], gradtx.set_hyperparams(state[1], learning_rate=1.0))
    assert float(fixed[1].hyperparams["learning_rate"]) == 1.0


@pytest.mark.parametrize("factory", [gradtx.rmsprop, gradtx.rprop])
@pytest.mark.parametrize("spelling", ["lr", "decay"])
def test_inject_names_the_factorys_spelling(factory, spelling):
    """``inject_hyperparams(rmsprop)(lr=...)`` says what ``rmsprop(lr=...)`` says."""
    with pytest.raises(TypeError) as direct:
        factory(**{spelling: 0.5})
    with pytest.raises(TypeError) as injected:
        gradtx.inject_hyperparams(factory)(**{spelling: 0.5})
    assert str(injected.value) == str(direct.value)


def test_inject_unknown_keyword_still_raises():
    with pytest.raises(TypeError, match="unexpected keyword"):
        gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(bogus=1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, None], ids=["strong", "weak"])
def test_one_array_for_two_hyperparameters_survives_donation(dtype):
    """One array object passed for two names (and to set_hyperparams twice) is stored in
    two buffers: a donated step would otherwise be refused ("donate the same buffer
    twice"). Reference: the same step with two separate arrays, undonated."""
    a = jnp.asarray(0.1, dtype)
    params = {"w": jnp.asarray([1.0, -2.0])}
    grads = {"w": jnp.asarray([0.5, 0.25])}
    make = gradtx.inject_hyperparams(gradtx.rmsprop)
    tx = make(learning_rate=a, momentum=a, weight_decay=a)
    ref_tx = make(learning_rate=0.1, momentum=0.1, weight_decay=0.1)
    donated = jax.jit(tx.update, donate_argnums=(1,))
    state, ref_state = tx.init(params), ref_tx.init(params)
    leaves = jax.tree.leaves(state)
    assert len({id(x) for x in leaves}) == len(leaves)
    for step in range(3):
        if step == 1:
            b = jnp.asarray(0.2, jnp.float32)
            state = gradtx.set_hyperparams(state, learning_rate=b, momentum=b)
            ref_state = gradtx.set_hyperparams(ref_state, learning_rate=0.2, momentum=0.2)
        u, state = donated(grads, state, params)
        v, ref_state = ref_tx.update(grads, ref_state, params)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)


def test_init_copies_a_key_given_twice():
    """Typed PRNG keys too (inject_hyperparams passes them through)."""

    def factory(learning_rate, key, other_key):
        del key, other_key
        return gradtx.scale_by_learning_rate(learning_rate)

    key = jax.random.key(0)
    tx = gradtx.inject_hyperparams(factory)(0.1, key, key)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    assert state.hyperparams["key"] is not state.hyperparams["other_key"]
    jax.jit(lambda s: s, donate_argnums=(0,))(state)
    # and inside a trace (optax's test_prng_key_not_hyperparameter: jax.jit(init)), where
    # a key's own copy() fails; the key keeps its bits and its implementation
    traced = jax.jit(tx.init)(params)
    for name in ("key", "other_key"):
        assert jax.random.key_impl(traced.hyperparams[name]) == jax.random.key_impl(key)
        np.testing.assert_array_equal(
            jax.random.key_data(traced.hyperparams[name]), jax.random.key_data(key)
        )
    jax.jit(tx.update)(params, traced, params)


def _scheduled(lr, step):
    return lambda count: jnp.where(count < step, 0.1, lr)


@jax.jit
def _jitted_scheduled_update(lr, step, state, params):
    """The jitted update of the examples' transform, one program for all of them: the
    schedule's ``lr`` and ``step`` are arguments (traced, as ``count`` is in any jitted
    step), not constants of a program compiled per example."""
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=_scheduled(lr, step))
    return tx.update(params, state, params)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(-1.0, 1.0, width=32), step=st.integers(0, 3))
def test_a_scheduled_value_is_checked_at_every_eager_step_like_the_hyperparameter(lr, step):
    """A schedule's value at a later eager step is accepted or refused exactly as the
    constructor treats the same number; under jit it is not read (no host sync)."""
    sched = _scheduled(lr, step)
    params = {"w": jnp.ones(2)}
    try:
        gradtx.rmsprop(float(np.float32(lr)))
        valid = True
    except ValueError:
        valid = False
    if step == 0 and not valid:  # the value at step 0 is refused where it enters
        with pytest.raises(ValueError, match="learning_rate"):
            gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched)
        return
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=sched)
    state = tx.init(params)
    js = state
    for _ in range(step + 1):  # never refused under jit
        _, js = _jitted_scheduled_update(np.float32(lr), np.int32(step), js, params)
    for i in range(step + 1):
        if i == step and not valid:
            with pytest.raises(ValueError, match=rf"learning_rate.*step {step}"):
                tx.update(params, state, params)
            return
        _, state = tx.update(params, state, params)


def test_eager_updates_build_the_inner_transform_into_one_program():
    """Called eagerly, ``update`` runs the inner transform as one compiled program that
    takes the hyperparameters as arguments: traced once over the steps (a transform
    built afresh at each step would compile anew), and the numbers of ``jax.jit(update)``
    bit for bit, the values being arguments in both."""
    traced = []

    def factory(learning_rate, momentum):
        if isinstance(learning_rate, jax.core.Tracer):
            traced.append(learning_rate)
        return gradtx.rmsprop(learning_rate, momentum=momentum, centered=True)

    schedule = gradtx.linear_schedule(0.1, 0.01, 10)
    tx = gradtx.inject_hyperparams(factory)(learning_rate=schedule, momentum=0.9)
    params = {"w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32), "b": jnp.ones((), jnp.float32)}
    runs = []
    for update in (tx.update, jax.jit(tx.update)):
        state, out = tx.init(params), []
        for t in range(5):
            grads = jax.tree.map(lambda p, t=t: jnp.sin(3.0 * p + t), params)
            u, state = update(grads, state, params)
            out.append((u, state))
        runs.append(out)
        if update is tx.update:
            assert len(traced) == 1, f"the eager steps traced the inner update {len(traced)}x"
    chex.assert_trees_all_equal(*runs)
