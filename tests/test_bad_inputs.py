"""Every bad input refused where it enters, with a message that helps (issue 9, part 3)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2])}
GRADS = jax.tree.map(lambda p: jnp.sin(3 * p), PARAMS)


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
    state = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1).init(PARAMS)
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
        return tx.update(GRADS, tx.init(PARAMS), PARAMS)[0]

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
    state = tx.init(PARAMS)
    assert reads  # construction and init read the concrete arrays (once)
    reads.clear()
    _, state = tx.update(GRADS, state, PARAMS)
    _, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    assert reads == []


# --------------------------------------------------------------------------------------
# rprop(learning_rate=schedule): the schedule's value at step 0 seeds the step sizes
# --------------------------------------------------------------------------------------


def test_rprop_with_a_schedule_is_seeded_by_its_value_at_step_0():
    schedule = gradtx.exponential_decay(0.03, 10, 0.5)
    ours = gradtx.rprop(learning_rate=schedule)
    ref = gradtx.rprop(learning_rate=schedule(jnp.zeros([], jnp.int32)))  # the count at init
    s, s_ref = ours.init(PARAMS), ref.init(PARAMS)
    chex.assert_trees_all_equal(s, s_ref)
    for _ in range(3):
        u, s = ours.update(GRADS, s, PARAMS)
        u_ref, s_ref = ref.update(GRADS, s_ref, PARAMS)
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
