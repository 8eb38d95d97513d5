"""Every hyperparameter value torch.optim rejects for Rprop/RMSprop (and NaN/inf) raises
ValueError at construction, naming the argument and the value. torch is run live to
confirm it rejects the same values (where torch accepts a value that gradtx rejects, the
test says so)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradtx

NAN, INF = math.nan, math.inf

# (kwargs for gradtx.rmsprop, the argument named in the message, torch rejects it too)
RMSPROP_BAD = [
    ({"learning_rate": -1e-3}, "learning_rate", True),
    ({"eps": -1e-8}, "eps", True),
    ({"momentum": -0.1}, "momentum", True),
    ({"weight_decay": -1e-4}, "weight_decay", True),
    ({"alpha": -0.5}, "alpha", True),
    ({"learning_rate": NAN}, "learning_rate", True),
    ({"eps": NAN}, "eps", True),
    ({"alpha": NAN}, "alpha", True),
    ({"momentum": NAN}, "momentum", True),
    ({"weight_decay": NAN}, "weight_decay", True),
    ({"learning_rate": INF}, "learning_rate", False),
    ({"momentum": INF}, "momentum", False),
    ({"weight_decay": -INF}, "weight_decay", True),
    ({"alpha": 1.5}, "alpha", False),  # alpha > 1 makes the average diverge
    ({"learning_rate": np.float32(-0.1)}, "learning_rate", True),
    ({"eps": np.array(-1.0)}, "eps", True),
]

RPROP_BAD = [
    ({"learning_rate": -0.1}, "learning_rate", True),
    ({"learning_rate": NAN}, "learning_rate", True),
    ({"learning_rate": INF}, "learning_rate", False),
    ({"etas": (1.5, 1.2)}, "etas", True),  # eta_minus must be < 1
    ({"etas": (0.0, 1.2)}, "etas", True),  # and > 0
    ({"etas": (-0.5, 1.2)}, "etas", True),
    ({"etas": (0.5, 1.0)}, "etas", True),  # eta_plus must be > 1
    ({"etas": (0.5, 0.9)}, "etas", True),
    ({"etas": (NAN, 1.2)}, "etas", True),
    ({"etas": (0.5, INF)}, "etas", False),
    ({"step_sizes": (-1e-6, 50.0)}, "step_sizes", False),  # torch does not check these
    ({"step_sizes": (1.0, 0.5)}, "step_sizes", False),
    ({"step_sizes": (NAN, 50.0)}, "step_sizes", False),
    ({"step_sizes": (1e-6, INF)}, "step_sizes", False),
    ({"etas": 0.5}, "etas", True),  # not a pair
    ({"step_sizes": (1e-6, 50.0, 1.0)}, "step_sizes", False),  # torch fails only at step()
]


def _torch_rejects(opt_cls, kwargs):
    kw = dict(kwargs)
    if "learning_rate" in kw:
        kw["lr"] = kw.pop("learning_rate")
    try:
        opt_cls([torch.zeros(1, requires_grad=True)], **kw)
    except (ValueError, TypeError):
        return True
    return False


def _message_names(excinfo, name, kwargs):
    msg = str(excinfo.value)
    assert name in msg, msg
    value = kwargs[next(iter(kwargs))]
    shown = [repr(v) for v in (value if isinstance(value, tuple) else (value,))] + [str(value)]
    assert any(s in msg for s in shown), msg


@pytest.mark.parametrize(
    "alias,torch_cls,kwargs,name,torch_rejects",
    [(gradtx.rmsprop, torch.optim.RMSprop, *case) for case in RMSPROP_BAD]
    + [(gradtx.rprop, torch.optim.Rprop, *case) for case in RPROP_BAD],
    ids=lambda v: getattr(v, "__name__", repr(v)),
)
def test_aliases_reject(alias, torch_cls, kwargs, name, torch_rejects):
    with pytest.raises(ValueError) as excinfo:
        alias(**kwargs)
    _message_names(excinfo, name, kwargs)
    assert _torch_rejects(torch_cls, kwargs) == torch_rejects


@pytest.mark.parametrize(
    "ctor,kwargs,name",
    [
        (gradtx.scale_by_rms, {"decay": 1.5}, "decay"),
        (gradtx.scale_by_rms, {"eps": -1.0}, "eps"),
        (gradtx.scale_by_rms, {"initial_scale": NAN}, "initial_scale"),
        (gradtx.scale_by_stddev, {"decay": -0.1}, "decay"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "eta_minus": 1.5}, "eta_minus"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "eta_plus": 0.5}, "eta_plus"),
        (gradtx.scale_by_rprop, {"learning_rate": -0.1}, "learning_rate"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "min_step_size": -1.0}, "min_step_size"),
        (gradtx.scale_by_rprop, {"learning_rate": 0.1, "max_step_size": 1e-9}, "max_step_size"),
        (gradtx.trace, {"decay": -0.9}, "decay"),
        (gradtx.add_decayed_weights, {"weight_decay": -0.1}, "weight_decay"),
        (gradtx.scale, {"step_size": NAN}, "step_size"),
        (gradtx.scale_by_learning_rate, {"learning_rate": -1.0}, "learning_rate"),
    ],
)
def test_blocks_reject(ctor, kwargs, name):
    with pytest.raises(ValueError, match=name):
        ctor(**kwargs)


def test_boundary_values_are_accepted():
    """What torch accepts and is meaningful gradtx accepts: zeros, a minimum step of 0
    (torch's own param-group test uses it), min == max, alpha of 0 and 1."""
    gradtx.rmsprop(learning_rate=0.0, alpha=0.0, eps=0.0, weight_decay=0.0, momentum=0.0)
    gradtx.rmsprop(alpha=1.0)
    gradtx.rprop(learning_rate=0.0, step_sizes=(0.0, 50.0))
    gradtx.rprop(step_sizes=(0.1, 0.1))
    gradtx.rprop(etas=(1e-3, 1.0 + 1e-9))


def test_traced_hyperparameters_are_not_checked_in_python():
    """Hyperparameters that arrive traced (as inject_hyperparams passes them) are taken
    as they are: no Python-side check, no error, and the numbers follow the value."""

    @jax.jit
    def one_step(lr, momentum, params, grads):
        tx = gradtx.rmsprop(learning_rate=lr, momentum=momentum)
        updates, _ = tx.update(grads, tx.init(params), params)
        return updates

    params, grads = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.5)}
    u_traced = one_step(jnp.asarray(0.1), jnp.asarray(0.9), params, grads)
    tx = gradtx.rmsprop(learning_rate=0.1, momentum=0.9)
    u_const, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u_traced["w"], u_const["w"], rtol=1e-6)
