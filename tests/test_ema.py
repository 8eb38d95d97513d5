"""``ema`` (``gradtx/_ema.py``): its edges (optax's ``ema`` side by side is in
``tests/interop/test_optax_names.py``)."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


@pytest.mark.parametrize("debias", [True, False])
def test_ema_decay_zero(debias):
    """ema(0): m_t = g_t, debiased or not (1 - 0**t = 1)."""
    tx = gradtx.ema(0.0, debias=debias)
    state = tx.init({"w": jnp.zeros(2)})
    for g in ([1.0, -2.0], [3.0, 0.5]):
        u, state = tx.update({"w": jnp.asarray(g)}, state)
        np.testing.assert_array_equal(u["w"], np.asarray(g, np.float32))
