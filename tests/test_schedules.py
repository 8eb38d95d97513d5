"""Schedules against optax's (same names, arguments and numbers), at every count of a
range that crosses each boundary, eagerly and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx

CASES = [
    ("constant_schedule", dict(value=0.3)),
    (
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.01, power=2, transition_steps=20, transition_begin=5),
    ),
    ("polynomial_schedule", dict(init_value=1.0, end_value=0.5, power=1, transition_steps=0)),
    ("linear_schedule", dict(init_value=0.0, end_value=0.1, transition_steps=10)),
    ("piecewise_constant_schedule", dict(init_value=0.1, boundaries_and_scales={7: 0.5, 20: 0.1})),
    ("exponential_decay", dict(init_value=0.1, transition_steps=4, decay_rate=0.5)),
    (
        "exponential_decay",
        dict(
            init_value=0.1,
            transition_steps=3,
            decay_rate=0.5,
            transition_begin=5,
            staircase=True,
            end_value=0.01,
        ),
    ),
    ("exponential_decay", dict(init_value=0.1, transition_steps=1, decay_rate=1.1, end_value=0.2)),
    ("cosine_decay_schedule", dict(init_value=0.1, decay_steps=25, alpha=0.1, exponent=2.0)),
    ("warmup_constant_schedule", dict(init_value=0.0, peak_value=1.0, warmup_steps=8)),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30, end_value=0.05),
    ),
]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_same_values_as_optax(name, kwargs):
    ours, theirs = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
    counts = jnp.arange(40, dtype=jnp.int32)
    a = jax.jit(jax.vmap(ours))(counts) if name != "constant_schedule" else None
    for t in range(40):
        c = jnp.asarray(t, jnp.int32)
        np.testing.assert_allclose(ours(c), theirs(c), rtol=1e-15, atol=0)
        if a is not None:
            np.testing.assert_allclose(a[t], theirs(c), rtol=1e-6, atol=0)


def test_join_schedules_against_hand_written_values():
    s = gradtx.join_schedules(
        [gradtx.constant_schedule(1.0), gradtx.linear_schedule(2.0, 0.0, 4)], [3]
    )
    want = [1.0, 1.0, 1.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0]  # second starts at its own count 0
    np.testing.assert_allclose([float(s(jnp.int32(t))) for t in range(9)], want)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decay_steps"):
        gradtx.cosine_decay_schedule(1.0, 0)
    with pytest.raises(ValueError, match="boundaries_and_scales"):
        gradtx.piecewise_constant_schedule(1.0, {3: -0.5})
    with pytest.raises(ValueError, match="boundaries"):
        gradtx.join_schedules([gradtx.constant_schedule(1.0)] * 2, [1, 2])


@settings(max_examples=40, deadline=None)
@given(
    init=st.floats(-10, 10, width=32),
    end=st.floats(-10, 10, width=32),
    steps=st.integers(1, 1000),
    power=st.sampled_from([1.0, 2.0, 0.5]),
)
def test_polynomial_schedule_stays_between_its_ends_under_jit(init, end, steps, power):
    """Under jit XLA may divide by the constant step count as a multiply by its rounded
    reciprocal; the value must still never leave [init, end] (a linear decay of a weight
    decay to 0 gave -3e-9 at its last step), and from the last step on it is end_value
    exactly, as eagerly."""
    sched = jax.jit(gradtx.polynomial_schedule(init, end, power, steps))
    counts = jnp.array([0, steps // 2, steps - 1, steps, steps + 5], jnp.int32)
    values = np.asarray(jax.vmap(sched)(counts), np.float64)
    lo, hi = min(np.float32(init), np.float32(end)), max(np.float32(init), np.float32(end))
    # (init - end) * frac + end rounds within an ulp of the ends (optax's formula too)
    ulp = 2 * np.spacing(np.float32(max(abs(init), abs(end))))
    assert np.all(values >= lo - ulp) and np.all(values <= hi + ulp), values
    assert values[3] == np.float32(end) and values[4] == np.float32(end)
    if end == 0:  # a decay to 0 never changes sign (a weight decay never turns negative)
        assert np.all(values * np.sign(init) >= 0), values
