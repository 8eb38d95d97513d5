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
from tests._counts import NOT_A_COUNT, SPELLINGS


def test_k_of_any_integer_spelling_is_optaxs_int_k():
    """Any integer-valued ``k`` (an int, a float, a NumPy or JAX scalar, as a schedule's
    step counts) sums and emits as ``optax.apply_every(int(k))`` (all in one program)."""
    g = {"x": jnp.arange(1.0, 3.0)}
    pairs = [
        (gradtx.apply_every(spell(k)), optax.apply_every(k)) for k in (1, 3) for spell in SPELLINGS
    ]

    def run(tx):
        state, out = tx.init(g), []
        for t in range(7):
            u, state = tx.update(jax.tree.map(lambda x, t=t: x * (t + 1), g), state)
            out.append(u)
        return out

    runs = jax.jit(lambda: [(run(ours), run(theirs)) for ours, theirs in pairs])()
    for ours, theirs in runs:
        chex.assert_trees_all_equal(ours, theirs)


@settings(max_examples=30, deadline=None)
@given(bad=NOT_A_COUNT)
def test_k_refuses_what_is_not_an_integer_by_name(bad):
    """Every other value is refused by name at construction (a traced one with a
    TypeError: it is read in Python)."""
    with pytest.raises(ValueError, match="Invalid k"):
        gradtx.apply_every(bad)
    with pytest.raises(TypeError, match=r"Invalid k.*must be concrete"):
        jax.jit(gradtx.apply_every)(2)
