"""A schedule's values are checked like the hyperparameter they stand for.

``_validation.schedule`` is the one check: the value at step 0 where the schedule enters
(a constructor), every concrete value of an eager step, and under ``jit`` the shape only
(a traced value is never read: no host sync in a compiled step). A value that is not a
real scalar is refused, never broadcast. The reference for "checked like a concrete
hyperparameter": the same constructor given that value as a number.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

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
