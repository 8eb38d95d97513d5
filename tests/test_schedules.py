"""Schedules against optax's (same names, arguments and numbers), at every count of a
range that crosses each boundary, eagerly and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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
