"""Every hyperparameter value torch.optim rejects for Rprop/RMSprop (and NaN/inf) raises
ValueError at construction, naming the argument and the value. torch is run live to
confirm it rejects the same values (where torch accepts a value that gradtx rejects, the
test says so)."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

NAN, INF = math.nan, math.inf

# (kwargs for gradtx.rmsprop, the argument named in the message, torch rejects it too)
RMSPROP_BAD = [
    ({"learning_rate": -1e-3}, "learning_rate", True),
    ({"eps": -1e-8}, "eps", True),
    ({"momentum": -0.1}, "momentum", True),
    ({"weight_decay": -1e-4}, "weight_decay", True),
    ({"alpha": -0.5}, "alpha", True),
    ({"learning_rate": NAN}, "learning_rate", True),
    ({"eps": NAN}, "eps", True),
    ({"alpha": NAN}, "alpha", True),
    ({"momentum": NAN}, "momentum", True),
    ({"weight_decay": NAN}, "weight_decay", True),
    ({"learning_rate": INF}, "learning_rate", False),
    ({"momentum": INF}, "momentum", False),
    ({"weight_decay": -INF}, "weight_decay", True),
    ({"alpha": 1.5}, "alpha", False),  # alpha > 1 makes the average diverge
    ({"learning_rate": np.float32(-0.1)}, "learning_rate", True),
    ({"eps": np.array(-1.0)}, "eps", True),
]

RPROP_BAD = [
    ({"learning_rate": -0.1}, "learning_rate", True),
    ({"learning_rate": NAN}, "learning_rate", True),
    ({"learning_rate": INF}, "learning_rate", False),
    ({"etas": (1.5, 1.2)}, "etas", True),  # eta_minus must be < 1
    ({"etas": (0.0, 1.2)}, "etas", True),  # and > 0
    ({"etas": (-0.5, 1.2)}, "etas", True),
    ({"etas": (0.5, 1.0)}, "etas", True),  # eta_plus must be > 1
    ({"etas": (0.5, 0.9)}, "etas", True),
    ({"etas": (NAN, 1.2)}, "etas", True),
    ({"etas": (0.5, INF)}, "etas", False),
    ({"step_sizes": (-1e-6, 50.0)}, "step_sizes", False),  # torch does not check these
    ({"step_sizes": (1.0, 0.5)}, "step_sizes", False),
    ({"step_sizes": (NAN, 50.0)}, "step_sizes", False),
    ({"step_sizes": (1e-6, INF)}, "step_sizes", False),
    ({"etas": 0.5}, "etas", True),  # not a pair
    ({"step_sizes": (1e-6, 50.0, 1.0)}, "step_sizes", False),  # torch fails only at step()
]


def _torch_rejects(opt_cls, kwargs):
    kw = dict(kwargs)
    if "learning_rate" in kw:
        kw["lr"] = kw.pop("learning_rate")
    try:
        opt_cls([torch.zeros(1, requires_grad=True)], **kw)
    except (ValueError, TypeError):
        return True
    return False


def _message_names(excinfo, name, kwargs):
    msg = str(excinfo.value)
    assert name in msg, msg
    value = kwargs[next(iter(kwargs))]
    shown = [repr(v) for v in (value if isinstance(value, tuple) else (value,))] + [str(value)]
    assert any(s in msg for s in shown), msg


@pytest.mark.parametrize(
    "alias,torch_cls,kwargs,name,torch_rejects",
    [(gradtx.rmsprop, torch.optim.RMSprop, *case) for case in RMSPROP_BAD]
    + [(gradtx.rprop, torch.optim.Rprop, *case) for case in RPROP_BAD],
    ids=lambda v: getattr(v, "__name__", repr(v)),
)
def test_aliases_reject(alias, torch_cls, kwargs, name, torch_rejects):
    with pytest.raises(ValueError) as excinfo:
        alias(**kwargs)
    _message_names(excinfo, name, kwargs)
    assert _torch_rejects(torch_cls, kwargs) == torch_rejects


@pytest.mark.parametrize(
    "ctor,kwargs,name",
    [
        (gradtx.scale_by_rms, {"decay": 1.5}, "decay"),
        (gradtx.scale_by_rms, {"eps": -1.0}, "eps"),
        (gradtx.scale_by_rms, {"initial_scale": NAN}, "initial_scale"),
        (gradtx.scale_by_stddev, {"decay": -0.1}, "decay"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "eta_minus": 1.5}, "eta_minus"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "eta_plus": 0.5}, "eta_plus"),
        (gradtx.scale_by_rprop, {"learning_rate": -0.1}, "learning_rate"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "min_step_size": -1.0}, "min_step_size"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "max_step_size": 1e-9}, "max_step_size"),
        (gradtx.trace, {"decay": -0.9}, "decay"),
        (gradtx.add_decayed_weights, {"weight_decay": -0.1}, "weight_decay"),
        (gradtx.scale, {"step_size": NAN}, "step_size"),
        (gradtx.scale_by_learning_rate, {"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_blocks_reject(ctor, kwargs, name):
    with pytest.raises(ValueError, match=name):
        ctor(**kwargs)


def test_boundary_values_are_accepted():
    """What torch accepts and is meaningful gradtx accepts: zeros, a minimum step of 0
    (torch's own param-group test uses it), min == max, alpha of 0 and 1."""
    gradtx.rmsprop(learning_rate=0.0, alpha=0.0, eps=0.0, weight_decay=0.0, momentum=0.0)
    gradtx.rmsprop(alpha=1.0)
    gradtx.rprop(learning_rate=0.0, step_sizes=(0.0, 50.0))
    gradtx.rprop(step_sizes=(0.1, 0.1))
    gradtx.rprop(etas=(1e-3, 1.0 + 1e-9))


def test_traced_hyperparameters_are_not_checked_in_python():
    """Hyperparameters that arrive traced (as inject_hyperparams passes them) are taken
    as they are: no Python-side check, no error, and the numbers follow the value."""

    @jax.jit
    def one_step(lr, momentum, params, grads):
        tx = gradtx.rmsprop(learning_rate=lr, momentum=momentum)
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.5)}
    u_traced = one_step(jnp.asarray(0.1), jnp.asarray(0.9), params, grads)
    tx = gradtx.rmsprop(learning_rate=0.1, momentum=0.9)
    u_const, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u_traced["w"], u_const["w"], rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Every bad input refused where it enters, with a message that helps (issue 9, part 3).
# ---------------------------------------------------------------------------------------


BAD_PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2])}
BAD_GRADS = jax.tree.map(lambda p: jnp.sin(3 * p), BAD_PARAMS)


# --------------------------------------------------------------------------------------
# Flags must be bool
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda v: gradtx.rmsprop(centered=v), "centered"),
        (lambda v: gradtx.rmsprop(maximize=v), "maximize"),
        (lambda v: gradtx.rmsprop(centered=True, clamp_variance=v), "clamp_variance"),
        (lambda v: gradtx.rprop(maximize=v), "maximize"),
        (lambda v: gradtx.scale_by_rms(eps_in_sqrt=v), "eps_in_sqrt"),
        (lambda v: gradtx.scale_by_rms(bias_correction=v), "bias_correction"),
        (lambda v: gradtx.scale_by_stddev(clamp_variance=v), "clamp_variance"),
        (lambda v: gradtx.trace(0.9, nesterov=v), "nesterov"),
        (lambda v: gradtx.scale_by_learning_rate(0.1, flip_sign=v), "flip_sign"),
        (lambda v: gradtx.ema(0.9, debias=v), "debias"),
        (lambda v: gradtx.MultiSteps(gradtx.scale(1.0), 2, use_grad_mean=v), "use_grad_mean"),
        (lambda v: gradtx.exponential_decay(1.0, 5, 0.5, staircase=v), "staircase"),
    ],
)
@pytest.mark.parametrize("value", ["no", "yes", 1, 0, None])
def test_flags_must_be_bool(call, name, value):
    with pytest.raises(ValueError, match=rf"Invalid {name}: .* \(must be a bool\)"):
        call(value)


def test_numpy_bool_is_a_bool():
    gradtx.rmsprop(centered=np.bool_(True))


# --------------------------------------------------------------------------------------
# Concrete values of any type checked where they enter; traced values exempt
# --------------------------------------------------------------------------------------

NEGATIVE = [
    pytest.param(-1.0, id="float"),
    pytest.param(np.float32(-1.0), id="numpy"),
    pytest.param(jnp.array(-1.0), id="jax"),
    pytest.param(jnp.array(-1.0, jnp.bfloat16), id="jax-bf16"),
]


@pytest.mark.parametrize("lr", NEGATIVE)
@pytest.mark.parametrize("alias", [gradtx.rmsprop, gradtx.rprop])
def test_negative_learning_rate_refused_at_construction(alias, lr):
    with pytest.raises(ValueError, match=r"Invalid learning_rate: .*\(must be >= 0\)"):
        alias(learning_rate=lr)


@pytest.mark.parametrize("lr", NEGATIVE)
def test_inject_hyperparams_checks_at_construction(lr):
    with pytest.raises(ValueError, match="Invalid learning_rate"):
        gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=lr)


def test_inject_hyperparams_checks_a_schedule_at_init():
    # at construction already: the inner constructor checks the schedule's step-0 value
    with pytest.raises(ValueError, match="Invalid learning_rate"):
        gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=lambda count: count - 1.0)


@pytest.mark.parametrize("bad", [-5.0, jnp.array(-5.0), np.float64(-5.0), float("nan")])
def test_set_hyperparams_checks(bad):
    state = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1).init(BAD_PARAMS)
    with pytest.raises(ValueError, match="Invalid learning_rate"):
        gradtx.set_hyperparams(state, learning_rate=bad)
    with pytest.raises(ValueError, match="Invalid alpha"):
        gradtx.set_hyperparams(state, alpha=1.5)
    gradtx.set_hyperparams(state, learning_rate=0.2, alpha=0.5)  # fine


def test_traced_values_are_exempt():
    """Inside jit the value is unknown: no check, no error, no sync."""

    @jax.jit
    def step(lr):
        tx = gradtx.rmsprop(lr)
        return tx.update(BAD_GRADS, tx.init(BAD_PARAMS), BAD_PARAMS)[0]

    chex.assert_tree_all_finite(step(-1.0))


def test_inject_update_reads_no_value(monkeypatch):
    """inject_hyperparams rebuilds the inner transform inside every update: from values
    checked already, without reading them back from the device (a host sync each step).
    Deliberately watches a private helper: gradtx._validation.concrete is where every check
    reads a value (jax.transfer_guard does not guard the CPU backend)."""
    from gradtx import _validation

    reads = []
    original = _validation.concrete

    def watched(value):
        out = original(value)
        if isinstance(value, jax.Array) and out is not None:
            reads.append(value)
        return out

    monkeypatch.setattr(_validation, "concrete", watched)
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=jnp.array(0.1), alpha=0.9)
    state = tx.init(BAD_PARAMS)
    assert reads  # construction and init read the concrete arrays (once)
    reads.clear()
    _, state = tx.update(BAD_GRADS, state, BAD_PARAMS)
    _, state = jax.jit(tx.update)(BAD_GRADS, state, BAD_PARAMS)
    assert reads == []


# --------------------------------------------------------------------------------------
# rprop(learning_rate=schedule): the schedule's value at step 0 seeds the step sizes
# --------------------------------------------------------------------------------------


def test_rprop_with_a_schedule_is_seeded_by_its_value_at_step_0():
    schedule = gradtx.exponential_decay(0.03, 10, 0.5)
    ours = gradtx.rprop(learning_rate=schedule)
    ref = gradtx.rprop(learning_rate=schedule(jnp.zeros([], jnp.int32)))  # the count at init
    s, s_ref = ours.init(BAD_PARAMS), ref.init(BAD_PARAMS)
    chex.assert_trees_all_equal(s, s_ref)
    for _ in range(3):
        u, s = ours.update(BAD_GRADS, s, BAD_PARAMS)
        u_ref, s_ref = ref.update(BAD_GRADS, s_ref, BAD_PARAMS)
        chex.assert_trees_all_equal(u, u_ref)
    with pytest.raises(ValueError, match="Invalid learning_rate"):
        gradtx.rprop(learning_rate=lambda count: -1.0)


# --------------------------------------------------------------------------------------
# Pairs: the message names the pair and says what is wrong with it
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: gradtx.rprop(step_sizes=(50.0, 1e-6)),
            r"Invalid step_sizes: \(50.0, 1e-06\) \(must be \(min, max\) with 0 <= min <= max; "
            r"the pair is reversed\)\.",
        ),
        (
            lambda: gradtx.rprop(etas=(1.2, 0.5)),
            r"Invalid etas: \(1.2, 0.5\) \(must be \(eta_minus, eta_plus\) with "
            r"0 < eta_minus < 1 < eta_plus; the pair is reversed\)\.",
        ),
        (
            lambda: gradtx.rprop(etas=(0.5, 0.9)),
            r"Invalid etas: \(0.5, 0.9\) .*; eta_plus = 0.9 breaks it\)\.",
        ),
        (
            lambda: gradtx.rprop(step_sizes=(-1.0, 1.0)),
            r"Invalid step_sizes: \(-1.0, 1.0\) .*; min = -1.0 breaks it\)\.",
        ),
        (lambda: gradtx.rprop(etas=0.5), r"Invalid etas: 0.5 \(must be a pair of two numbers\)"),
        (
            lambda: gradtx.scale_by_rprop(0.1, eta_minus=1.2, eta_plus=0.5),
            r"Invalid eta_plus: 0.5 .*it and eta_minus = 1.2 are reversed",
        ),
        (
            lambda: gradtx.scale_by_rprop(0.1, min_step_size=5.0, max_step_size=1.0),
            r"Invalid max_step_size: 1.0 .*it and min_step_size = 5.0 are reversed",
        ),
    ],
)
def test_pair_messages(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------------------
# Trees: errors name the path
# --------------------------------------------------------------------------------------


def test_apply_updates_shape_mismatch_names_the_path():
    params = {"layer": [{"w": jnp.ones((3, 2))}, {"w": jnp.ones(4)}]}
    updates = {"layer": [{"w": jnp.ones((3, 2))}, {"w": jnp.ones(1)}]}  # would broadcast
    with pytest.raises(ValueError, match=r"\['layer'\]\[1\]\['w'\] has shape \(1,\), expected"):
        gradtx.apply_updates(params, updates)


# --------------------------------------------------------------------------------------
# Integer and bool params
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.uint8, jnp.bool_])
@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.rprop(0.5),
        lambda: gradtx.rmsprop(0.1, momentum=0.9),
        lambda: gradtx.trace(0.9),
        lambda: gradtx.ema(0.9),
    ],
)
def test_integer_and_bool_params_refused_at_init(make, dtype):
    params = {"emb": jnp.ones(3), "ids": jnp.ones(4, dtype)}
    with pytest.raises(TypeError, match=r"params at path \['ids'\] have dtype .*floating"):
        make().init(params)


def test_integer_leaves_can_be_left_out_with_partition():
    params = {"emb": jnp.ones(3), "ids": jnp.arange(4)}
    tx = gradtx.partition(
        {"opt": gradtx.rprop(0.5), "frozen": gradtx.set_to_zero()},
        {"emb": "opt", "ids": "frozen"},
    )
    state = tx.init(params)
    grads = {"emb": jnp.array([1.0, -1.0, 0.5]), "ids": jnp.zeros(4, jnp.int32)}
    updates, _ = tx.update(grads, state, params)
    new = gradtx.apply_updates(params, updates)
    np.testing.assert_array_equal(new["ids"], params["ids"])
    np.testing.assert_array_equal(new["emb"], params["emb"] - 0.5 * jnp.sign(grads["emb"]))


# ---------------------------------------------------------------------------------------
# A schedule's values are checked like the hyperparameter they stand for.
#
# ``_validation.schedule`` is the one check: the value at step 0 where the schedule enters
# (a constructor), every concrete value of an eager step, and under ``jit`` the shape only
# (a traced value is never read: no host sync in a compiled step). A value that is not a
# real scalar is refused, never broadcast. The reference for "checked like a concrete
# hyperparameter": the same constructor given that value as a number.
# ---------------------------------------------------------------------------------------


PARAMS = {"w": jnp.ones(2, jnp.float32)}
GRADS = {"w": jnp.full(2, 0.5, jnp.float32)}

# (factory of a schedule, the constructor of the same hyperparameter given a number)
TAKERS = {
    "scale_by_learning_rate": (gradtx.scale_by_learning_rate, "learning_rate"),
    "rmsprop": (gradtx.rmsprop, "learning_rate"),
    "add_decayed_weights": (gradtx.add_decayed_weights, "weight_decay"),
    "rmsprop(weight_decay)": (lambda wd: gradtx.rmsprop(0.1, weight_decay=wd), "weight_decay"),
    "scale_by_schedule": (gradtx.scale_by_schedule, "step_size_fn"),
}


def _accepts(make, value):
    try:
        make(value)
    except ValueError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(TAKERS)),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3)),
)
def test_the_value_at_step_0_is_checked_like_the_number(taker, value):
    make, name = TAKERS[taker]
    schedule = lambda count: value  # noqa: E731
    if taker == "scale_by_schedule":  # its number form is scale(): any finite factor
        number_ok = math.isfinite(value)
    else:
        number_ok = _accepts(make, value)
    if number_ok:
        make(schedule)
    else:
        with pytest.raises(ValueError, match=rf"Invalid {name} \(its schedule's value at step 0\)"):
            make(schedule)


@pytest.mark.parametrize("taker", sorted(TAKERS))
def test_a_later_negative_value_is_refused_at_its_eager_step(taker):
    make, name = TAKERS[taker]
    value = math.nan if taker == "scale_by_schedule" else -0.1
    schedule = lambda count: jnp.where(count >= 2, value, 0.1)  # noqa: E731
    tx = make(schedule)
    state = tx.init(PARAMS)
    for _ in range(2):
        _, state = tx.update(GRADS, state, PARAMS)
    with pytest.raises(ValueError, match=rf"Invalid {name} \(its schedule's value at step 2\)"):
        tx.update(GRADS, state, PARAMS)


@pytest.mark.parametrize("taker", sorted(TAKERS))
def test_a_traced_value_is_not_read_inside_jit(taker):
    """Under jit the value is traced: not checked (that would be a host sync), and no
    ConcretizationTypeError either; the step compiles and runs."""
    make, _ = TAKERS[taker]
    value = math.nan if taker == "scale_by_schedule" else -0.1
    tx = make(lambda count: jnp.where(count >= 2, value, 0.1))
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for _ in range(3):
        _, state = step(GRADS, state, PARAMS)


@pytest.mark.parametrize("taker", sorted(TAKERS))
@pytest.mark.parametrize("shape", [(2,), (1,), (2, 1)])
def test_a_value_that_is_not_a_scalar_is_refused_even_under_jit(taker, shape):
    make, name = TAKERS[taker]
    with pytest.raises(ValueError, match=rf"Invalid {name} .*step 0.*must be a real scalar"):
        make(lambda count: jnp.full(shape, 0.1))
    # a schedule whose step-0 value hides its shape (a Python scalar) is caught where traced
    tricky = lambda count: 0.1 if not isinstance(count, jax.core.Tracer) else jnp.full(shape, 0.1)  # noqa: E731
    tx = make(tricky)
    with pytest.raises(ValueError, match=rf"Invalid {name} \(its schedule's value at step \?\)"):
        jax.jit(tx.update)(GRADS, tx.init(PARAMS), PARAMS)


@pytest.mark.parametrize("value", [True, 1j, "0.1", None])
def test_a_value_of_another_kind_is_refused(value):
    with pytest.raises(ValueError, match=r"Invalid learning_rate .*must be a real scalar"):
        gradtx.rmsprop(lambda count: value)


def test_the_issue_example_weights_no_longer_climb():
    """A learning-rate schedule that turns negative was accepted and the weights climbed;
    gradtx's own schedules included."""
    schedule = gradtx.linear_schedule(0.1, -0.1, transition_steps=4)
    tx = gradtx.rmsprop(schedule)
    state = tx.init(PARAMS)
    steps = 0
    with pytest.raises(ValueError, match=r"step 3\): .*must be >= 0"):
        while True:
            _, state = tx.update(GRADS, state, PARAMS)
            steps += 1
    assert steps == 3  # rates 0.1, 0.05, 0.0 applied, -0.05 refused
    with pytest.raises(ValueError, match=r"Invalid learning_rate \(its schedule's value at step 0"):
        gradtx.rmsprop(lambda count: -0.1)


def test_not_a_schedule():
    with pytest.raises(ValueError, match=r"Invalid step_size_fn: 0.1 \(must be a schedule"):
        gradtx.scale_by_schedule(0.1)


def test_checked_values_are_the_schedules_values():
    tx = gradtx.scale_by_schedule(lambda t: 1.0 / (t + 1))
    state = tx.init(PARAMS)
    for t in range(3):
        out, state = tx.update(GRADS, state)
        np.testing.assert_allclose(out["w"], GRADS["w"] / (t + 1), rtol=1e-7)
