"""Checkpoints (gradtx/_checkpoint.py): for every alias and wrapper, a run stopped at
step k, saved to disk, restored (in a fresh jitted step, as a new process would) and
continued is bit-identical, params and state, to the uninterrupted run. A restore into a
mismatched tree fails clearly and changes nothing. Nothing is lost: every bit of every
dtype with x64 on and off, PRNG keys, checkpoints moved between processes (flax,
equinox, every alias), memory at most 1.5x the state, files of the previous format; an
x64 file into a 32-bit target told to enable x64, other containers at the same paths
refused. The .npz file layer under it (files that are not checkpoints, permissions,
symlinks, killed saves): test_checkpoint_file.py."""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx
from tests import _ckpt_cases

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


def _step_fn(txs):
    """One compiled step of every transform in ``txs`` (name -> transform), each on its
    own params and state; ``apply_if_finite`` alone sees NaN gradients."""

    def step_one(name, p, s, t):
        grads = grads_at if name == "apply_if_finite" else finite_grads_at
        u, s = txs[name].update(grads(t, p), s, p)
        return gradtx.apply_updates(p, u), s

    return _ckpt_cases.step_all(step_one)


@pytest.fixture(scope="module")
def runs():
    """Every case run to ``STOP`` and on to ``STEPS`` by one compiled step (all cases in
    one program); and what a new process would resume with: new transforms, and a new
    compiled step of them."""
    txs = {name: make() for name, make in TRANSFORMS.items()}
    start = {name: (params0(), tx.init(params0())) for name, tx in txs.items()}
    stopped, uninterrupted = _ckpt_cases.run(_step_fn(txs), start, STOP, STEPS)
    fresh = {name: make() for name, make in TRANSFORMS.items()}
    return stopped, uninterrupted, fresh, _step_fn(fresh)


def _assert_bit_identical(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_resume_after_restore_is_bit_identical(name, tmp_path, runs):
    stopped, uninterrupted, fresh_txs, fresh_step = runs
    p, s = stopped[name]
    path = tmp_path / "ckpt.npz"
    gradtx.save_checkpoint(path, {"params": p, "opt_state": s, "step": jnp.int32(STOP)})
    del p, s

    fresh = fresh_txs[name]  # a new process: new transform, new compiled step
    like = jax.eval_shape(
        lambda: {"params": params0(), "opt_state": fresh.init(params0()), "step": jnp.int32(0)}
    )
    restored = gradtx.restore_checkpoint(path, like)
    at = {**stopped, name: (restored["params"], restored["opt_state"])}
    for t in range(int(restored["step"]), STEPS):  # the other cases ride along
        at = fresh_step(at, t)
    p, s = at[name]
    _assert_bit_identical((p, s), uninterrupted[name])
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


# ----------------------------------------------------------------------------------------
# Nothing lost: every dtype in x64 on and off, PRNG keys, other processes, memory, formats
# ----------------------------------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent
DTYPES = [
    "int64", "uint64", "float64", "complex128", "int32", "uint32", "float32", "complex64",
    "bfloat16", "float16", "int8", "uint8", "bool",
]  # fmt: skip


def _array(dtype: str, raw: bytes) -> np.ndarray:
    """Any bit pattern of ``dtype`` (NaN payloads included) from ``raw``."""
    dt = jnp.dtype(dtype)
    n = len(raw) // dt.itemsize
    if dtype == "bool":
        return np.frombuffer(raw, np.uint8) % 2 == 1
    return np.frombuffer(raw[: n * dt.itemsize], dt).copy()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    leaves=st.lists(st.tuples(st.sampled_from(DTYPES), st.binary(max_size=48)), max_size=6),
    x64=st.booleans(),
)
def test_every_bit_of_every_dtype_survives_in_x64_on_and_off(tmp_path_factory, leaves, x64):
    """A NumPy leaf of any dtype, any bits: restored with its dtype and bits. With x64 off
    a 64-bit leaf restores as a NumPy array (JAX would make it 32 bits); every other leaf
    as a jax.Array."""
    tree = {f"l{i}": _array(d, raw) for i, (d, raw) in enumerate(leaves)}
    path = tmp_path_factory.mktemp("x64") / "t.npz"
    with jax.enable_x64(x64):
        gradtx.save_checkpoint(path, tree)
        restored = gradtx.restore_checkpoint(path, tree)
        for key, want in tree.items():
            got = restored[key]
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.asarray(got).tobytes() == want.tobytes()
            canonical = jax.dtypes.canonicalize_dtype(want.dtype) == want.dtype
            assert isinstance(got, jax.Array if canonical else np.ndarray)


def test_the_issues_64_bit_examples_with_x64_off(tmp_path):
    with jax.enable_x64(False):
        tree = {"count": 2**40, "f": np.float64(1 + 2**-40), "c": np.complex128(1 + 2**-40j)}
        gradtx.save_checkpoint(tmp_path / "t.npz", tree)
        back = gradtx.restore_checkpoint(tmp_path / "t.npz", tree)
    assert int(back["count"]) == 2**40 and back["count"].dtype == np.int64
    assert float(back["f"]) == 1 + 2**-40 and complex(back["c"]) == 1 + 2**-40j


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "unsafe_rbg"])
def test_prng_keys_round_trip(impl, tmp_path):
    def keys():
        return {
            "one": jax.random.key(1, impl=impl),
            "batch": jax.random.split(jax.random.key(2, impl=impl), 3),
            "raw": jax.random.PRNGKey(4),  # a raw uint32 key: a plain array
        }

    tree = keys()
    gradtx.save_checkpoint(tmp_path / "k.npz", tree)
    back = gradtx.restore_checkpoint(tmp_path / "k.npz", jax.eval_shape(keys))
    for name in ("one", "batch"):
        assert jax.random.key_impl(back[name]) == jax.random.key_impl(tree[name])
        chex.assert_trees_all_equal(
            jax.random.key_data(back[name]), jax.random.key_data(tree[name])
        )
        chex.assert_trees_all_equal(  # the key draws what the saved key draws
            jax.random.uniform(back[name].reshape(-1)[0]),
            jax.random.uniform(tree[name].reshape(-1)[0]),
        )
    chex.assert_trees_all_equal(back["raw"], tree["raw"])
    other = "rbg" if impl != "rbg" else "threefry2x32"
    with pytest.raises(ValueError, match=r"at path \['one'\].*key<"):
        gradtx.restore_checkpoint(
            tmp_path / "k.npz", {**tree, "one": jax.random.key(0, impl=other)}
        )


def test_inject_hyperparams_with_a_key_hyperparameter_round_trips(tmp_path):
    tree = _ckpt_cases.cases()["inject_with_key"]
    gradtx.save_checkpoint(tmp_path / "s.npz", tree)
    back = gradtx.restore_checkpoint(tmp_path / "s.npz", _ckpt_cases.like(tree))
    _ckpt_cases.assert_bit_identical(back, tree)


def _child(*args: str, timeout: float = 300, check: bool = True, **env: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **env}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory):
    """One child process for both directions: it restores, and compares bit for bit,
    every case this process saved, then saves every case for this process to restore.
    Returns the child's report per direction and the folder it saved to. The child reads
    this run's compilation cache (its eager steps are the programs this process compiled
    building the same cases: the same executables, so the same numbers)."""
    here = tmp_path_factory.mktemp("saved_here")
    there = tmp_path_factory.mktemp("saved_there")
    _ckpt_cases.main("save", str(here))
    cache = jax.config.jax_compilation_cache_dir
    env = {
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    } if cache else {}  # fmt: skip
    args = ("-m", "tests._ckpt_cases", "exchange", str(here), str(there))
    proc = _child(*args, check=False, **env)
    parts = re.split(r"^(restore|save): ", proc.stdout, flags=re.M)
    report = dict(zip(parts[1::2], parts[2::2]))
    for direction in ("restore", "save"):  # a child that died reports its stderr
        report.setdefault(direction, f"no report (exit {proc.returncode})\n{proc.stderr}")
    return report, there


def test_saved_in_another_process_restores_here(exchanged):
    """A flax TrainState (apply_fn, tx: function addresses), an equinox module with a
    static transform, and every alias (typed and raw keys beside them): written by a
    child process, restored here bit for bit; the stored structure holds no repr."""
    report, there = exchanged
    assert report["save"].startswith("ok"), "saving in the child process:\n" + report["save"]
    _ckpt_cases.main("restore", str(there))
    ts = _ckpt_cases.cases()["flax_train_state"]
    back = gradtx.restore_checkpoint(there / "flax_train_state.npz", _ckpt_cases.like(ts))
    back.apply_gradients(grads=back.params)  # a usable TrainState, this process's tx
    with zipfile.ZipFile(there / "flax_train_state.npz") as zf:
        structure = str(np.lib.format.read_array(zf.open("structure.npy")))
    assert "TrainState(" in structure and "0x" not in structure and "<" not in structure


def test_saved_here_restores_in_another_process(exchanged):
    report, _ = exchanged
    assert report["restore"].startswith("ok"), (
        "restoring, in the child process, what this process saved:\n" + report["restore"]
    )


def test_peak_memory_of_save_and_restore_is_under_1_5x_the_state(tmp_path):
    """64 MiB in a fresh process: the peak resident memory while saving, or restoring,
    minus the memory before, is at most 1.5x the state (the state itself included).
    A fresh process per action, not the exchange's child: in a process that has built,
    saved or restored other trees, memory freed but still resident could take the
    save's or restore's allocations without raising the peak."""
    path = str(tmp_path / "m.npz")
    for action in ("save", "restore"):
        out = json.loads(_child("-m", "tests._ckpt_memory", action, "64", path).stdout)
        assert out["peak"] - out["base"] <= 1.5 * out["state_bytes"], out


def test_format_1_files_still_restore(tmp_path):
    """A checkpoint written by the previous gradtx (``str(treedef)`` as its structure):
    read, with the structure checked by leaf paths."""
    tree = {"w": jnp.arange(3.0, dtype=jnp.float32), "n": jnp.int32(7)}
    leaves, treedef = jax.tree.flatten(tree)
    arrays = {
        "format": np.array("gradtx-checkpoint-1"),
        "treedef": np.array(str(treedef)),
        "paths": np.array(["['n']", "['w']"]),
    }
    for i, leaf in enumerate(leaves):
        a = np.asarray(leaf)
        arrays[f"leaf_{i}_bytes"] = np.frombuffer(a.tobytes(), np.uint8)
        arrays[f"leaf_{i}_dtype"] = np.array(a.dtype.name)
        arrays[f"leaf_{i}_shape"] = np.array(a.shape, dtype=np.int64)
    np.savez(tmp_path / "v1.npz", **arrays)
    _assert_bit_identical(gradtx.restore_checkpoint(tmp_path / "v1.npz", tree), tree)


def test_x64_checkpoint_into_a_32_bit_target_says_to_enable_x64(tmp_path):
    with jax.enable_x64(True):
        tx = gradtx.rmsprop(1e-2)
        gradtx.save_checkpoint(tmp_path / "c.npz", tx.init({"w": jnp.ones(3, jnp.float64)}))
    with jax.enable_x64(False):
        like = jax.eval_shape(tx.init, {"w": jnp.ones(3, float)})
        with pytest.raises(ValueError, match=r"float64\[3\], target float32.*jax_enable_x64"):
            gradtx.restore_checkpoint(tmp_path / "c.npz", like)


def test_same_paths_other_containers_are_refused_without_reprs(tmp_path):
    """A tuple where a list was saved: the leaf paths agree, the containers do not."""
    gradtx.save_checkpoint(tmp_path / "c.npz", {"a": (jnp.ones(2), jnp.ones(2))})
    with pytest.raises(ValueError, match=r"different containers.*saved .*tuple.*target .*list"):
        gradtx.restore_checkpoint(tmp_path / "c.npz", {"a": [jnp.ones(2), jnp.ones(2)]})


_LEAF = st.sampled_from(["float32", "int32", "bfloat16", "complex64", "bool"]).map(
    lambda d: np.arange(3).astype(jnp.dtype(d))
)
_TREE = st.recursive(
    _LEAF | st.none(),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.lists(kids, max_size=3).map(tuple)
        | st.dictionaries(st.text("abc", min_size=1, max_size=2), kids, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_TREE)
def test_any_tree_shape_round_trips_and_other_containers_are_refused(tmp_path_factory, tree):
    """Nested dicts, lists, tuples and Nones: restored with the same structure and bits;
    a target with a list where a tuple was saved (or the reverse) is refused."""
    path = tmp_path_factory.mktemp("trees") / "t.npz"
    gradtx.save_checkpoint(path, tree)
    back = gradtx.restore_checkpoint(path, tree)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    _assert_bit_identical(back, jax.tree.map(jnp.asarray, tree))

    def swap(x):  # every list a tuple and every tuple a list
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return (tuple if isinstance(x, list) else list)(swap(v) for v in x)
        return x

    other = swap(tree)
    if jax.tree.structure(other) != jax.tree.structure(tree):
        with pytest.raises(ValueError, match="checkpoint does not match the target tree"):
            gradtx.restore_checkpoint(path, other)
