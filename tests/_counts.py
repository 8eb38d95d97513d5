"""A count argument (``MultiSteps``'s ``every_k_schedule``, ``apply_every``'s ``k``): the
spellings of an integer >= 1 that it takes, and (a hypothesis strategy) the classes of
values it refuses."""

import math

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

SPELLINGS = (
    int,
    float,
    np.int64,
    np.float32,
    lambda k: jnp.asarray(k, jnp.int32),
    lambda k: jnp.asarray(k, jnp.float32),
)
"""An integer k >= 1 as an int, a float, a NumPy scalar or a JAX scalar."""

NOT_A_COUNT = st.one_of(
    st.integers(-100, 0),
    st.integers(2**31, 2**62),  # beyond the int32 counter
    st.floats().filter(lambda x: not (math.isfinite(x) and x == int(x) and x >= 1)),
    st.booleans(),
    st.text(max_size=2),
    st.none(),
    st.just([2]),
    st.just(jnp.array([2, 3])),
    st.just(2 + 0j),
)
"""Zero and negatives, fractions, NaN and infinities, bools, strings, None, sequences,
arrays that are not scalars, complex numbers."""
