"""Test-wide set-up: float64 is enabled so float64 parity can be tested.

Tests state every dtype they use explicitly; nothing relies on the default dtype.
"""

import jax

jax.config.update("jax_enable_x64", True)
