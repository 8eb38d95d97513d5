"""RMSprop's per-leaf math (gradtx/_rms_math.py): the bias correction 1 / (1 - beta^t)
the normalisers multiply by, against exact (a float64 reference) and against optax's
float32 1 - decay**t, eagerly and jitted. The rest of _rms_math (ema_sq, normalise,
the inputs of weight_decay=/maximize=) is tested through the normalisers: test_rms.py,
and against torch and the NumPy references: test_aliases.py; the 1 - beta^t under it
(_numerics.one_minus_power) in interop/test_optax_contract.py."""

import jax
import jax.numpy as jnp
import numpy as np


def test_bias_correction_is_closer_to_exact_than_optax():
    """The docstrings' claim (docs/numerics.md): at beta = 0.999 the 1 / (1 - beta^t)
    the blocks multiply by is within 3.3e-7 relative of exact (float64 reference), where
    optax's 1 - decay**t in float32 is up to ~2e-5 off; eagerly and jitted alike."""
    from gradtx._rms_math import inverse_one_minus_power

    decay, t = 0.999, np.arange(1, 1001)
    exact = 1 / -np.expm1(t * np.log(decay))
    tt = jnp.asarray(t, jnp.int32)
    eager = np.asarray(inverse_one_minus_power(decay, tt), np.float64)
    jitted = np.asarray(jax.jit(lambda t: inverse_one_minus_power(decay, t))(tt), np.float64)
    np.testing.assert_array_equal(eager, jitted)
    assert (np.abs(eager - exact) / exact).max() < 3.5e-7
    theirs = 1 / np.asarray(1 - jnp.float32(decay) ** jnp.asarray(t, jnp.float32), np.float64)
    assert (np.abs(theirs - exact) / exact).max() > 1e-5
