"""add_decayed_weights (gradtx/_weight_decay.py): the decoupled form (after the normaliser,
masked to the weights) against a NumPy reference written from its published rule
(Loshchilov & Hutter 2019), within the suite's tolerance policy (tests/_tolerance.py);
and its need for the params, refused clearly without them. Elsewhere: the coupled form
against torch.optim.RMSprop's weight_decay by param group in test_combine.py, inside the
normaliser against the chain of blocks in test_rms.py; the block against
optax.add_decayed_weights in parity/test_optax.py."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from tests import _tolerance as h
from tests.linear_fit import grad_fn, params0, run


def test_decoupled_weight_decay_matches_its_published_rule():
    """Loshchilov & Hutter (2019): the decay skips the normaliser,
    theta <- theta - lr * (g / (sqrt(v) + eps) + wd * theta)."""
    lr, wd, alpha, eps = 0.01, 0.1, 0.9, 1e-8
    tx = gradtx.chain(
        gradtx.scale_by_rms(alpha, eps, eps_in_sqrt=False),
        gradtx.add_decayed_weights(wd, mask=lambda p: {k: k == "w" for k in p}),
        gradtx.scale_by_learning_rate(lr),
    )
    ours, _ = run(tx, 15)

    def reference(nudge=None):
        p = h.nudge(params0()) if nudge == "params" else params0()
        v, out = {k: np.zeros_like(x) for k, x in p.items()}, []
        for _ in range(15):
            g = grad_fn(p)
            g = h.nudge(g) if nudge == "grads" else g
            for k in p:
                v[k] = alpha * v[k] + (1 - alpha) * g[k] ** 2
                decay = wd * p[k] if k == "w" else 0.0
                p[k] = p[k] - lr * (g[k] / (np.sqrt(v[k]) + eps) + decay)
            out.append(dict(p))
        return out

    nudged = [reference(n) for n in h.NUDGES]
    reference_name = "NumPy decoupled weight decay (Loshchilov & Hutter 2019)"
    h.check_trajectories(reference_name, "masked", ours, reference(), nudged, 15)


def test_params_required_by_weight_decay():
    tx = gradtx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update({"a": jnp.ones(2)}, tx.init({"a": jnp.ones(2)}))
