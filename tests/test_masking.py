"""masked's masks (gradtx/_masking.py): a mask holds bools only (Python, NumPy, or a
concrete boolean scalar array); any other entry ("False", 0, an array of several) is
refused naming its path, where optax.masked would take its truthiness. The reference: a
leaf the mask selects gets the inner transform's update (the gradient times 2, by hand),
the others pass unchanged. masked beside partition, against optax.masked:
test_combine.py."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


@pytest.mark.parametrize("entry", ["False", "yes", 0, 1, 0.0, jnp.array([True, False])], ids=repr)
def test_masks_hold_bools_only(entry):
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.masked(gradtx.scale(2.0), {"w": entry, "b": True})
    with pytest.raises(TypeError, match=r"Invalid mask: the entry at path \['w'\]"):
        tx.init(params)


@pytest.mark.parametrize("flag", [True, False, np.bool_(True), np.array(False), jnp.array(True)])
def test_masks_of_bools_of_every_kind(flag):
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.masked(gradtx.scale(2.0), {"w": flag, "b": False})
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], (2.0 if bool(flag) else 1.0) * params["w"])
    np.testing.assert_array_equal(updates["b"], params["b"])
