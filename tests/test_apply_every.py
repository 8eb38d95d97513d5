"""apply_every (gradtx/_apply_every.py): its count argument, against optax.apply_every with
the same integer. Its numbers against optax's for an int ``k`` are in
``interop/test_optax_names.py::test_apply_every``."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from hypothesis import given, settings

import gradtx
from tests._counts import INTEGER_VALUED, NOT_A_COUNT


@settings(max_examples=30, deadline=None)
@given(k=INTEGER_VALUED, bad=NOT_A_COUNT)
def test_k_of_any_integer_spelling_is_optaxs_int_k_and_others_are_refused(k, bad):
    """Any integer-valued ``k`` (as a schedule's step counts) sums and emits as
    ``optax.apply_every(int(k))``; every other value is refused by name at construction (a
    traced one with a TypeError: it is read in Python)."""
    g = {"x": jnp.arange(1.0, 3.0)}
    runs = []
    for tx in (gradtx.apply_every(k), optax.apply_every(int(k))):
        state, out = tx.init(g), []
        for t in range(7):
            u, state = tx.update(jax.tree.map(lambda x, t=t: x * (t + 1), g), state)
            out.append(u)
        runs.append(out)
    chex.assert_trees_all_equal(*runs)
    with pytest.raises(ValueError, match="Invalid k"):
        gradtx.apply_every(bad)
    with pytest.raises(TypeError, match=r"Invalid k.*must be concrete"):
        jax.jit(lambda k: gradtx.apply_every(k).init(g))(int(k))
