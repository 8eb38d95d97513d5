"""Training on several processes with ``jax.distributed``, and orbax checkpoints of the
sharded gradtx state.

Run: python examples/multiprocess.py        (needs orbax-checkpoint)

Run as above, the script starts two copies of itself on this machine, each with 4
simulated CPU devices, joined by ``jax.distributed`` into one 8-device runtime (the
gloo CPU collectives; on GPU or TPU hosts JAX picks NCCL or ICI itself). On real hosts,
run ``python examples/multiprocess.py worker I host0:1234 CKPT_DIR`` once per host
(``I`` = 0, 1, ...), with ``CKPT_DIR`` on storage every host sees.

Each process:

1. builds the mesh from ``jax.devices()`` (all 8 devices of both processes) and places
   the params FSDP-style (first axis split over the mesh) with
   ``jax.make_array_from_callback``: each process supplies only its own shards;
2. ``jax.jit(tx.init)`` gives every state leaf its param's sharding;
3. trains with a donated jitted step, the batch split over the same 8 devices
   (data-parallel; XLA gathers params and reduce-scatters gradients across processes);
4. saves params and state with orbax halfway (every process writes its own shards),
   restores them into an abstract target (shapes, dtypes, shardings) and resumes: the
   resumed run is bit-identical to the one that did not stop.

The orbax recipe, in short (any gradtx state, any sharding)::

    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": params, "opt_state": opt_state})
    ckpt.wait_until_finished()            # before donating params/state to the next step
    target = jax.eval_shape(lambda p: {"params": p, "opt_state": tx.init(p)}, params)
    target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          target, shardings)   # the shardings to restore onto
    restored = ckpt.restore(path, target)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

N_PROCESSES, DEVICES_PER_PROCESS = 2, 4


def launch():
    """Start ``N_PROCESSES`` copies of this script; kill them all if one fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    flags = f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    with tempfile.TemporaryDirectory() as ckpt_dir:
        logs = [open(os.path.join(ckpt_dir, f"log{i}"), "w+") for i in range(N_PROCESSES)]
        cmd = [sys.executable, __file__, "worker", "{i}", address, ckpt_dir]
        procs = [
            subprocess.Popen(
                [c.format(i=i) for c in cmd], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for i, log in enumerate(logs)
        ]
        try:
            codes = [p.wait(timeout=600) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for log, code in zip(logs, codes):
            log.seek(0)
            lines = log.read().splitlines()
            print("\n".join(lines if code else [x for x in lines if "[Gloo]" not in x]))
            log.close()
    if any(codes):
        sys.exit(f"a worker failed: exit codes {codes}")
    print(
        f"summary: {N_PROCESSES} processes x {DEVICES_PER_PROCESS} devices trained one FSDP "
        "run and resumed it from an orbax checkpoint bit-identically (each process's line above)"
    )


def worker(process_id: int, address: str, ckpt_dir: str, steps: int = 40):
    import functools

    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only
    jax.distributed.initialize(address, num_processes=N_PROCESSES, process_id=process_id)

    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradtx

    mesh = jax.make_mesh((jax.device_count(),), ("x",), axis_types=(AxisType.Auto,))
    split = NamedSharding(mesh, P("x"))

    def spec(a):  # FSDP: split the first axis where it divides, replicate the rest
        return split if a.ndim and a.shape[0] % mesh.size == 0 else NamedSharding(mesh, P())

    def global_array(a, sharding):  # every process holds `a`; each supplies its shards
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    rng = np.random.default_rng(0)
    host = {
        "w1": rng.normal(size=(16, 64)).astype(np.float32) / 4,
        "b1": np.zeros(64, np.float32),
        "w2": rng.normal(size=(64, 1)).astype(np.float32) / 8,
        "b2": np.zeros(1, np.float32),  # 1 row: cannot split 8 ways, replicated
    }
    shardings = jax.tree.map(spec, host)
    params = jax.tree.map(global_array, host, shardings)

    def loss_fn(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"] - y) ** 2)

    tx = gradtx.rmsprop(learning_rate=1e-2, momentum=0.9, centered=True)
    opt_state = jax.jit(tx.init)(params)  # state sharded like the params

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y):
        updates, opt_state = tx.update(jax.grad(loss_fn)(params, x, y), opt_state, params)
        return gradtx.apply_updates(params, updates), opt_state

    def batch(step):  # the global batch of 128, split 16 per device over both processes
        x = np.random.default_rng(step).normal(size=(128, 16)).astype(np.float32)
        return global_array(x, split), global_array(np.sin(x.sum(1, keepdims=True)), split)

    def train(params, opt_state, start, stop):
        for step in range(start, stop):
            params, opt_state = train_step(params, opt_state, *batch(step))
        return params, opt_state

    path = os.path.join(ckpt_dir, "halfway")
    first_loss = float(loss_fn(params, *batch(0)))
    params, opt_state = train(params, opt_state, 0, steps // 2)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, {"params": params, "opt_state": opt_state})  # each process: its shards
    ckpt.wait_until_finished()
    # the target: shapes, dtypes and the shardings to restore onto (here: the same)
    target = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": opt_state}
    )
    params, opt_state = train(params, opt_state, steps // 2, steps)

    restored = ckpt.restore(path, target)
    params2, opt_state2 = train(restored["params"], restored["opt_state"], steps // 2, steps)

    def local_bytes(tree):  # this process's shards of every leaf
        leaves = jax.tree.leaves(tree)
        return [np.asarray(s.data).tobytes() for a in leaves for s in a.addressable_shards]

    same = local_bytes((params, opt_state)) == local_bytes((params2, opt_state2))
    nu = opt_state[0].nu["w1"]  # the chain's first block: scale_by_stddev
    rows = [s.index[0].start for s in nu.addressable_shards]  # 2 rows per device
    print(
        f"process {jax.process_index()}/{jax.process_count()}: "
        f"{jax.local_device_count()} of {jax.device_count()} devices; "
        f"w1 {params['w1'].shape} state.nu['w1'] split {nu.sharding.spec}, "
        f"this process holds its rows {min(rows)}:{max(rows) + 2}; "
        f"loss on batch 0: {first_loss:.3f} -> {float(loss_fn(params, *batch(0))):.3f} "
        f"in {steps} steps; "
        f"resumed from orbax bit-identical: {same}",
        flush=True,
    )
    jax.distributed.shutdown()
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        launch()
