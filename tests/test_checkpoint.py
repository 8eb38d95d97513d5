"""Checkpoints: for every alias and wrapper, a run stopped at step k, saved to disk,
restored (in a fresh jitted step, as a new process would) and continued is bit-identical,
params and state, to the uninterrupted run. A restore into a mismatched tree fails
clearly and changes nothing."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

STEPS, STOP = 12, 5
NAN_STEPS = {3, 7, 8}


def params0(dtype=jnp.float32):
    return {
        "w": jnp.linspace(-1.0, 1.0, 6, dtype=dtype).reshape(3, 2),
        "b": jnp.asarray([0.3, -0.2], dtype),
        "z": jnp.asarray([0.5 + 0.5j], jnp.complex64),  # a complex leaf, checkpointed too
    }


def grads_at(t, p):
    """Deterministic gradients of a quartic bowl, with NaN at chosen steps for the
    non-finite guard (other transforms see them only where noted)."""
    g = jax.tree.map(lambda x: x**3 + 0.1 * (t % 4) - 0.05, p)
    bad = jnp.isin(t, jnp.asarray(sorted(NAN_STEPS)))
    return {**g, "w": jnp.where(bad, jnp.nan, g["w"])}


def finite_grads_at(t, p):
    return jax.tree.map(lambda x: x**3 + 0.1 * (t % 4) - 0.05, p)


def _labels(p):
    return {"w": "a", "b": "b", "z": "a"}


TRANSFORMS = {
    "rprop": lambda: gradtx.rprop(1e-2),
    "rprop_maximize": lambda: gradtx.rprop(1e-2, step_sizes=(0.0, 1.0), maximize=True),
    "rmsprop": lambda: gradtx.rmsprop(1e-2),
    "rmsprop_full": lambda: gradtx.rmsprop(
        1e-2, weight_decay=1e-2, momentum=0.9, centered=True, clamp_variance=True
    ),
    "inject_rmsprop_schedule": lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(
        learning_rate=gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 3, 12), momentum=0.5
    ),
    "inject_rprop": lambda: gradtx.inject_hyperparams(gradtx.rprop)(learning_rate=1e-2),
    "multisteps_mean": lambda: gradtx.MultiSteps(gradtx.rmsprop(1e-2, momentum=0.9), 3),
    "multisteps_sum": lambda: gradtx.MultiSteps(gradtx.rprop(1e-2), 2, reduce="sum"),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.rmsprop(1e-2, centered=True), 2),
    "masked": lambda: gradtx.masked(gradtx.rmsprop(1e-2), {"w": True, "b": False, "z": True}),
    "partition": lambda: gradtx.partition(
        {"a": gradtx.rmsprop(1e-2, momentum=0.9), "b": gradtx.rprop(1e-3)}, _labels
    ),
    "clipped_chain": lambda: gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.scale(0.5),
        gradtx.clip_by_block_norm(0.3),
        gradtx.clip(0.1),
        gradtx.add_decayed_weights(1e-3, mask=lambda p: {k: k != "b" for k in p}),
        gradtx.rmsprop(1e-2),
    ),
}


def _step_fn(tx, grads):
    def step(p, s, t):
        u, s = tx.update(grads(t, p), s, p)
        return gradtx.apply_updates(p, u), s

    return jax.jit(step)


def _assert_bit_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_resume_after_restore_is_bit_identical(name, tmp_path):
    tx = TRANSFORMS[name]()
    grads = grads_at if name == "apply_if_finite" else finite_grads_at
    p, s = params0(), tx.init(params0())
    step = _step_fn(tx, grads)
    for t in range(STEPS):
        p, s = step(p, s, t)
    uninterrupted = (p, s)

    p, s = params0(), tx.init(params0())
    for t in range(STOP):
        p, s = step(p, s, t)
    path = tmp_path / "ckpt.npz"
    gradtx.save_checkpoint(path, {"params": p, "opt_state": s, "step": jnp.int32(STOP)})
    del p, s

    fresh = TRANSFORMS[name]()  # a new process: new transform, new compiled step
    like = jax.eval_shape(
        lambda: {"params": params0(), "opt_state": fresh.init(params0()), "step": jnp.int32(0)}
    )
    restored = gradtx.restore_checkpoint(path, like)
    p, s = restored["params"], restored["opt_state"]
    step = _step_fn(fresh, grads)
    for t in range(int(restored["step"]), STEPS):
        p, s = step(p, s, t)
    _assert_bit_identical((p, s), uninterrupted)
    if name == "apply_if_finite":
        assert int(s.total_notfinite) == len(NAN_STEPS)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restore_into_a_mismatched_tree_fails_clearly_and_changes_nothing(tmp_path):
    tx = gradtx.rmsprop(1e-2, momentum=0.9)
    p = params0()
    state = tx.init(p)
    path = tmp_path / "ckpt.npz"
    gradtx.save_checkpoint(path, state)
    before = _digest(path)

    cases = [
        (gradtx.rmsprop(1e-2).init(p), r"leaves saved|extra leaf"),  # no momentum buffer
        (gradtx.rmsprop(1e-2, momentum=0.9, centered=True).init(p), r"path"),  # mu, nu
        (
            tx.init({**p, "w": jnp.zeros((2, 3), jnp.float32)}),
            r"\['w'\].*float32\[3, 2\].*float32\[2, 3\]",
        ),
        (tx.init(params0(jnp.float64)), r"float32.*float64"),
        (tx.init({"v": p["w"], "b": p["b"], "z": p["z"]}), r"path"),
    ]
    for like, message in cases:
        snapshot = jax.tree.map(np.array, like)
        with pytest.raises(ValueError, match=message):
            gradtx.restore_checkpoint(path, like)
        _assert_bit_identical(jax.tree.map(jnp.asarray, snapshot), like)  # like untouched
    assert _digest(path) == before  # the file too

    restored = gradtx.restore_checkpoint(path, state)
    _assert_bit_identical(restored, state)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a gradtx checkpoint"):
        gradtx.restore_checkpoint(path, {"a": jnp.zeros(2)})


def test_every_dtype_round_trips_exactly(tmp_path):
    tree = {
        "bf16": jnp.asarray([1.5, -3.25], jnp.bfloat16),
        "f16": jnp.asarray([np.pi], jnp.float16),
        "i8": jnp.asarray([-1, 0, 1], jnp.int8),
        "c128": jnp.asarray([1 + 2j], jnp.complex128),
        "flag": jnp.asarray(True),
        "nan": jnp.asarray([np.nan, np.inf], jnp.float32),
        "empty": jnp.zeros((0, 3)),
        "masked": gradtx.MaskedNode(),
    }
    gradtx.save_checkpoint(tmp_path / "t.npz", tree)
    _assert_bit_identical(gradtx.restore_checkpoint(tmp_path / "t.npz", tree), tree)
