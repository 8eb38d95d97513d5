"""join_schedules (gradtx/_schedules_joined.py) against values written by hand: each
schedule starts at its own count 0 at its boundary. Elsewhere: the joined schedules and
the warm-up ones (warmup_constant_schedule, warmup_cosine_decay_schedule) against optax's
and their bad or traced arguments in test_schedules.py's rows (with every builder),
join_schedules against optax.join_schedules in parity/test_optax.py."""

import jax.numpy as jnp
import numpy as np

import gradtx


def test_join_schedules_against_hand_written_values():
    s = gradtx.join_schedules(
        [gradtx.constant_schedule(1.0), gradtx.linear_schedule(2.0, 0.0, 4)], [3]
    )
    want = [1.0, 1.0, 1.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0]  # second starts at its own count 0
    np.testing.assert_allclose([float(s(jnp.int32(t))) for t in range(9)], want)
