"""orbax checkpoints of gradtx state: for every alias, wrapper and stateful block, a run
stopped at step ``STOP``, saved with orbax's ``StandardCheckpointer``, restored into an
abstract target built by a fresh transform (as a new process would) and continued is
bit-identical, params and state, to the run that did not stop.

The trees hold what gradtx state can hold: ``MaskedNode``s (``masked``, ``partition``,
``add_decayed_weights(mask=)``), injected hyperparameters and schedules, int8 (Rprop's
signs) and int32 (counters) leaves, bfloat16, float32-for-bfloat16
(``accumulator_dtype``) and complex leaves, and beside them integer training leaves (a
step, a PRNG key). Sharded state, written by two processes and restored onto another
mesh, is in ``tests/test_sharding.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import gradtx
from tests import _ckpt_cases

STEPS, STOP = 8, 3


def params0():
    return {
        "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(3, 2),
        "b": jnp.asarray([0.3, -0.2], jnp.float32),
        "h": jnp.asarray([0.5, -1.5, 2.0], jnp.bfloat16),
        "z": jnp.asarray([0.5 + 0.5j], jnp.complex64),
    }


def grads_at(t, p):
    return jax.tree.map(lambda x: x**3 + (0.1 * (t % 4) - 0.05).astype(x.dtype), p)


def _labels(p):
    return {"w": "a", "b": "b", "h": "a", "z": "b"}


def _no_bias(p):
    return {k: k != "b" for k in p}


inject = gradtx.inject_hyperparams

TRANSFORMS = {
    **{
        f"rprop[{v}]": (lambda v=v: gradtx.rprop(1e-2, variant=v))
        for v in ("irprop-", "rprop-", "rprop+", "irprop+")
    },
    "rprop[maximize]": lambda: gradtx.rprop(1e-2, maximize=True),
    "rmsprop": lambda: gradtx.rmsprop(1e-2),
    "rmsprop[wd,momentum,centered,clamp]": lambda: gradtx.rmsprop(
        1e-2, weight_decay=1e-2, momentum=0.9, centered=True, clamp_variance=True
    ),
    "rmsprop[float32 state]": lambda: gradtx.rmsprop(
        1e-2, momentum=0.9, centered=True, accumulator_dtype=jnp.float32
    ),
    "inject(rmsprop)[schedule]": lambda: inject(gradtx.rmsprop)(
        learning_rate=gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 12), momentum=0.5
    ),
    "inject(rprop)": lambda: inject(gradtx.rprop)(learning_rate=1e-2),
    "MultiSteps[mean]": lambda: gradtx.MultiSteps(gradtx.rmsprop(1e-2, momentum=0.9), 3),
    "MultiSteps[sum]": lambda: gradtx.MultiSteps(gradtx.rprop(1e-2), 2, reduce="sum"),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.rmsprop(1e-2, centered=True), 2),
    "masked": lambda: gradtx.masked(
        gradtx.rprop(1e-2), {"w": True, "b": False, "h": True, "z": False}
    ),
    "partition": lambda: gradtx.partition(
        {"a": gradtx.rmsprop(1e-2, momentum=0.9), "b": gradtx.rprop(1e-3)}, _labels
    ),
    "multi_transform": lambda: gradtx.multi_transform(
        {"a": gradtx.rprop(1e-2), "b": gradtx.scale_by_rms()}, _labels
    ),
    "chain[clip,mask,schedule,blocks]": lambda: gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.clip_by_block_rms(0.5),
        gradtx.add_decayed_weights(1e-3, mask=_no_bias),
        gradtx.scale_by_rms(bias_correction=True),
        gradtx.scale_by_stddev(accumulator_dtype=jnp.float32),
        gradtx.trace(0.9, nesterov=True),
        gradtx.scale_by_rprop(1e-2),
        gradtx.scale_by_schedule(gradtx.exponential_decay(1e-2, 2, 0.5)),
    ),
}


def _train_tree(p, s, t):
    """What a training loop checkpoints: params, optimizer state, and integer leaves."""
    key = jax.random.key_data(jax.random.key(t))  # uint32[2]
    return {"params": p, "opt_state": s, "step": jnp.int32(t), "key": key}


def _step_fn(txs):
    """One compiled step of every transform in ``txs`` (name -> transform), each on its
    own params and state."""

    def step_one(name, p, s, t):
        loss = sum(jnp.sum(jnp.abs(x).astype(jnp.float32)) for x in jax.tree.leaves(p))
        u, s = txs[name].update(grads_at(t, p), s, p, value=loss)
        return gradtx.apply_updates(p, u), s

    return _ckpt_cases.step_all(step_one)


@pytest.fixture(scope="module")
def runs():
    """Every case run to ``STOP`` and on to ``STEPS`` by one compiled step (all cases in
    one program); and that step, which a test continues its restored case with."""
    txs = {name: make() for name, make in TRANSFORMS.items()}
    step = _step_fn(txs)
    start = {name: (params0(), tx.init(params0())) for name, tx in txs.items()}
    return (*_ckpt_cases.run(step, start, STOP, STEPS), step)


def _assert_bit_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


@pytest.fixture(scope="module")
def checkpointer():
    ckpt = ocp.StandardCheckpointer()
    yield ckpt
    ckpt.close()


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_orbax_resume_is_bit_identical(name, tmp_path, checkpointer, runs):
    stopped, uninterrupted, step = runs
    p, s = stopped[name]
    saved = _train_tree(p, s, STOP)
    checkpointer.save(tmp_path / "ckpt", saved)
    checkpointer.wait_until_finished()

    fresh = TRANSFORMS[name]()  # a new process: the target comes from a new transform
    target = jax.eval_shape(lambda: _train_tree(params0(), fresh.init(params0()), 0))
    restored = checkpointer.restore(tmp_path / "ckpt", target)
    _assert_bit_identical(restored, saved)
    at = {**stopped, name: (restored["params"], restored["opt_state"])}
    # the same compiled step (compiling again would only double the test's time); the
    # other cases ride along from where they stopped
    for t in range(int(restored["step"]), STEPS):
        at = step(at, t)
    _assert_bit_identical(at[name], uninterrupted[name])
