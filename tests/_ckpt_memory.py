"""Peak resident memory of saving or restoring a checkpoint, measured in a fresh process:

    python -m tests._ckpt_memory save|restore MIB PATH

prints one JSON line: the state's size, the resident memory before the state existed
(JAX started, a small checkpoint saved and restored to load what they use), and the
peak resident memory while the state was saved, or restored. The peak is the kernel's
high-water mark (VmHWM), reset just before the save or restore
(``/proc/self/clear_refs``), so imports and building the state do not count."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import jax
import jax.numpy as jnp

import gradtx


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _like(mib: int) -> dict:
    n = (mib << 20) // 4 // 2  # two float32 leaves, half the size each
    leaf = jax.ShapeDtypeStruct((n,), jnp.float32)
    return {"nu": leaf, "trace": leaf}


def main(action: str, mib: str, path: str) -> None:
    mib = int(mib)
    small = os.path.join(tempfile.mkdtemp(), "warm.npz")
    gradtx.save_checkpoint(small, {"a": jnp.ones(3)})
    gradtx.restore_checkpoint(small, {"a": jnp.ones(3)})
    base = _status("VmRSS")
    like = _like(mib)
    if action == "save":
        n = like["nu"].shape[0]
        state = {
            "nu": jnp.arange(n, dtype=jnp.float32),
            "trace": jnp.full(n, -1.5, dtype=jnp.float32),
        }
        jax.block_until_ready(state)
        _reset_peak()
        gradtx.save_checkpoint(path, state)
    else:
        _reset_peak()
        state = gradtx.restore_checkpoint(path, like)
        assert float(state["trace"][-1]) == -1.5
    size = sum(x.nbytes for x in jax.tree.leaves(state))
    peak = _status("VmHWM")
    print(json.dumps({"action": action, "state_bytes": size, "base": base, "peak": peak}))


if __name__ == "__main__":
    main(*sys.argv[1:])
