"""One process of the multi-process training run of ``tests/test_sharding.py``.

Not collected by pytest (the name does not start with ``test_``): it is started as a
script, with its device count already in ``XLA_FLAGS``, in one of two roles:

* ``worker I ADDR OUT``: process ``I`` of 2 (4 simulated CPU devices each), joined
  through ``jax.distributed`` at ``ADDR`` with the gloo CPU collectives: 8 global
  devices. For each optimizer it trains the model below with FSDP-sharded params
  and state, data-parallel over the 8 devices, for ``STEPS`` donated jitted steps;
  at step ``STOP`` it saves params and state with orbax (each process writes its own
  shards); then it restores that checkpoint onto the same mesh and resumes to
  ``STEPS``. It checks, after every step, that every state leaf has its param's
  sharding, and that the resumed run is bit-identical to the uninterrupted one;
  it writes the shards it holds (``OUT/worker{I}.npz``) and, process 0 only, the
  global values at ``STOP`` (``OUT/stop.npz``) before ``OUT/stop.done``.
* ``single OUT``: one process with 8 devices runs the same training
  (``OUT/single.npz``); then it waits for the workers' checkpoint and restores it
  onto a *different* mesh, 4 of its devices with everything replicated, resumes
  there, and checks that this is bit-identical to resuming from the values the
  workers had in memory at ``STOP`` (``OUT/reshard.npz``).

Everything is float64 (the cross-process all-reduce sums in another order than the
in-process one; in float64 the two runs agree to about 1e-13).
"""

from __future__ import annotations

import functools
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import gradtx  # noqa: E402

STEPS, STOP, BATCH = 24, 10, 64
OPTIMIZERS = {
    "rmsprop": lambda: gradtx.rmsprop(1e-2, momentum=0.9, centered=True),
    "rprop": lambda: gradtx.rprop(1e-2),
}


def host_params():
    """An MLP whose first axes split 8 ways (FSDP), and one bias that cannot (replicated)."""
    r = np.random.default_rng(0)
    return {
        "w1": r.normal(size=(16, 32)) / 4.0,
        "b1": np.zeros(32),
        "w2": r.normal(size=(32, 1)) / 6.0,
        "b2": np.zeros(1),
    }


def host_batch(step):
    r = np.random.default_rng(1 + step)
    x = r.normal(size=(BATCH, 16))
    return x, np.sin(x.sum(axis=1, keepdims=True))


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def fsdp(mesh, tree):
    """Split every leaf's first axis over the mesh where it divides; replicate the rest."""
    n = mesh.devices.size
    return jax.tree.map(
        lambda x: NamedSharding(mesh, P("x") if x.ndim and x.shape[0] % n == 0 else P()), tree
    )


def place(host, shardings):
    """Global arrays from host values every process holds (each supplies its shards)."""
    return jax.tree.map(
        lambda a, s: jax.make_array_from_callback(a.shape, s, lambda idx: a[idx]), host, shardings
    )


def train_step(tx):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, x, y):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return gradtx.apply_updates(params, updates), state

    return step


def check_state_sharded_like_params(params, state, where):
    """Every state leaf of a param's shape has that param's sharding."""
    by_shape = {p.shape: p.sharding for p in jax.tree.leaves(params)}
    n = 0
    for s in jax.tree.leaves(state):
        if s.ndim and s.shape in by_shape:
            assert s.sharding.is_equivalent_to(by_shape[s.shape], s.ndim), (where, s.sharding)
            n += 1
    assert n >= 4, (where, n)


def run(tx, params, state, mesh, start, stop, check=True):
    step = train_step(tx)
    batch = NamedSharding(mesh, P("x"))
    for t in range(start, stop):
        x, y = place(host_batch(t), (batch, batch))
        params, state = step(params, state, x, y)
        if check:
            check_state_sharded_like_params(params, state, f"step {t}")
    return params, state


def local_shards(tree):
    """The data this process holds: per leaf, the global array with what it does not
    hold zeroed, and a mask of what it holds."""
    out = {}
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        value, held = np.zeros(leaf.shape, leaf.dtype), np.zeros(leaf.shape, bool)
        for shard in leaf.addressable_shards:
            value[shard.index] = np.asarray(shard.data)
            held[shard.index] = True
        out[f"{i}"], out[f"{i}_held"] = value, held
    return out


def flat(tree, prefix):
    return {f"{prefix}/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}


def held_bytes(x):
    """The bytes of the part of ``x`` this process holds (all of a host array)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return b"".join(np.asarray(s.data).tobytes() for s in x.addressable_shards)
    return np.asarray(x).tobytes()


def assert_bit_identical(a, b, where):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b) and len(la) == len(lb), where
    for i, (x, y) in enumerate(zip(la, lb)):
        assert x.dtype == y.dtype and held_bytes(x) == held_bytes(y), (where, i)


def worker(process_id, address, out):
    jax.distributed.initialize(address, num_processes=2, process_id=process_id)
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
    ckpt = ocp.StandardCheckpointer()
    shards, at_stop = {}, {}
    for name, make in OPTIMIZERS.items():
        tx = make()
        params = place(host_params(), fsdp(mesh, host_params()))
        state = jax.jit(tx.init)(params)
        check_state_sharded_like_params(params, state, "init")
        params, state = run(tx, params, state, mesh, 0, STOP)
        path = os.path.join(out, "ckpt", name)
        try:  # gradtx's own format is for one host: it refuses, naming orbax
            gradtx.save_checkpoint(os.path.join(out, f"npz{process_id}.npz"), state)
            raise AssertionError("save_checkpoint wrote multi-process state")
        except ValueError as e:
            assert "orbax" in str(e) and "several processes" in str(e), e
        ckpt.save(path, {"params": params, "opt_state": state})  # each process: its shards
        ckpt.wait_until_finished()
        at_stop.update(flat(multihost_utils.process_allgather((params, state), tiled=True), name))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, (params, state))
        final = run(tx, params, state, mesh, STOP, STEPS)

        restored = ckpt.restore(path, {"params": abstract[0], "opt_state": abstract[1]})
        resumed = run(tx, restored["params"], restored["opt_state"], mesh, STOP, STEPS)
        assert_bit_identical(resumed, final, f"{name}: resumed after restore")
        for key, value in local_shards(final).items():
            shards[f"{name}/{key}"] = value
    np.savez(os.path.join(out, f"worker{process_id}.npz"), **shards)
    if process_id == 0:
        np.savez(os.path.join(out, "stop.npz"), **at_stop)
    multihost_utils.sync_global_devices("all written")
    if process_id == 0:
        open(os.path.join(out, "stop.done"), "w").close()
    jax.distributed.shutdown()


def single(out):
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
    results = {}
    for name, make in OPTIMIZERS.items():
        tx = make()
        params = place(host_params(), fsdp(mesh, host_params()))
        results.update(flat(run(tx, params, jax.jit(tx.init)(params), mesh, 0, STEPS), name))
    np.savez(os.path.join(out, "single.npz"), **results)

    # Restore the workers' checkpoint (8 devices over 2 processes, FSDP) onto 4
    # devices of this process, replicated, and resume there.
    deadline = time.monotonic() + 600
    while not os.path.exists(os.path.join(out, "stop.done")):
        assert time.monotonic() < deadline, "the workers never wrote their checkpoint"
        time.sleep(0.2)
    mesh4 = jax.make_mesh((4,), ("x",), (AxisType.Auto,), devices=jax.devices()[:4])
    replicated = NamedSharding(mesh4, P())
    ckpt = ocp.StandardCheckpointer()
    resharded = {}
    with np.load(os.path.join(out, "stop.npz")) as at_stop:
        for name, make in OPTIMIZERS.items():
            tx = make()
            like = jax.eval_shape(lambda p, tx=tx: (p, tx.init(p)), host_params())
            target = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), like
            )
            restored = ckpt.restore(
                os.path.join(out, "ckpt", name), {"params": target[0], "opt_state": target[1]}
            )
            restored = (restored["params"], restored["opt_state"])
            in_memory = jax.tree.unflatten(
                jax.tree.structure(like),
                [at_stop[f"{name}/{i}"] for i in range(len(jax.tree.leaves(like)))],
            )
            assert_bit_identical(restored, in_memory, f"{name}: restored onto 4 devices")
            for leaf in jax.tree.leaves(restored):
                assert leaf.sharding.is_equivalent_to(replicated, leaf.ndim), leaf.sharding
            resumed = run(tx, *restored, mesh4, STOP, STEPS, check=False)
            not_stopped = run(
                tx, *jax.device_put(in_memory, replicated), mesh4, STOP, STEPS, check=False
            )
            assert_bit_identical(resumed, not_stopped, f"{name}: resumed on 4 devices")
            for leaf in jax.tree.leaves(resumed):
                assert leaf.sharding.is_fully_replicated, leaf.sharding
            resharded.update(flat(resumed, name))
    np.savez(os.path.join(out, "reshard.npz"), **resharded)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "worker":
        worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        single(sys.argv[2])
