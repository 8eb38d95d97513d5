"""Checkpoints: save a pytree of arrays (params, optimizer state, both) to one ``.npz``
file and restore it into a tree of the same structure, bit for bit.

gradtx state is a pytree of arrays with a structure fixed by the transform and the
params, so a checkpoint is its leaves and a description of its structure. Each leaf is
stored as its raw bytes with its dtype name and shape (exact for every dtype, bfloat16,
complex and 64-bit included, with no pickling; a typed PRNG key as its key data and the
name of its implementation). The structure is stored as what identifies it, never as
object reprs: the path of each leaf and the type name of each container (a flax
``TrainState``'s ``apply_fn`` or an equinox module's static fields are not part of it),
so a checkpoint written by one process restores in another. ``restore_checkpoint(path,
like)`` checks the stored paths, containers, shapes and dtypes against ``like`` (a tree
of arrays or of ``jax.ShapeDtypeStruct``, e.g. ``tx.init(params)`` or
``jax.eval_shape(tx.init, params)``) before reading any leaf, and raises ``ValueError``
naming the first difference; it returns a new tree and changes nothing. A file that is
not a gradtx checkpoint, or is truncated or damaged, raises ``ValueError`` saying so.

Leaves are written and read one at a time, in chunks: saving adds a few MiB to the
state's memory, restoring holds the restored state and a few MiB (on CPU the restored
arrays use the buffers read from the file as they are).

This is the same contract as orbax's ``StandardCheckpointer`` (restore into a target
structure). It is for one host: a dependency-free single file, exact for every dtype,
with errors that name the first differing path. For state sharded over several
processes (each writes its own shards), for restoring onto another mesh, or for
asynchronous saves, use orbax: gradtx state is a plain pytree of arrays, so
``ocp.StandardCheckpointer().save(path, state)`` and ``.restore(path, target)`` with
``target = jax.eval_shape(tx.init, params)`` (leaves given the shardings to restore
onto) work as they are; ``examples/multiprocess.py`` shows it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx import _checkpoint_file as cf
from gradtx._trees import leaf_paths

_FORMAT = "gradtx-checkpoint-2"
_READS = ("gradtx-checkpoint-1", _FORMAT)
"""Format 1 stored the structure as ``str(treedef)`` (object reprs, which change from
process to process): its files are read with the structure checked by leaf paths."""


def _structure(treedef: Any) -> str:
    """The tree's containers by type name, without their static data: what identifies
    the structure from one process to the next (``str(treedef)`` holds object reprs)."""
    data = treedef.node_data()
    if data is None:
        return "*"
    name = getattr(data[0], "__qualname__", str(data[0]))
    return f"{name}({', '.join(_structure(c) for c in treedef.children())})"


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _dtype_name(leaf: Any) -> str:
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    return str(dtype) if _is_key(dtype) else np.dtype(dtype).name


def save_checkpoint(path: str | os.PathLike, tree: Any) -> None:
    r"""Write a pytree of arrays (params, optimizer state, both) to one ``.npz`` file.

    Each leaf is stored as its raw bytes with its dtype and shape, so restoring is bit for
    bit for every dtype (64-bit leaves with ``jax_enable_x64`` off included: they are
    NumPy arrays, and restore as NumPy arrays); a typed PRNG key (``jax.random.key``) is
    stored as its key data and the name of its implementation. Leaves are written one
    at a time, in chunks, so saving adds only a few MiB to the state's memory.

    The file is written to a temporary beside ``path`` and renamed over it, so an
    interrupted save never leaves a half-written checkpoint at ``path``; the temporary of
    a save that was killed is removed by the next save to the same ``path``. A new file
    gets the permissions the umask gives; a symlink at ``path`` stays, and the file it
    points to is written. Call it outside ``jit`` (it reads the arrays to the host). A
    leaf sharded over several processes raises ``ValueError``: use orbax for those
    (``examples/multiprocess.py``).

    Args:
      path: the file to write (conventionally ending in ``.npz``).
      tree: a pytree of arrays.

    Returns:
      None.

    Example:
      >>> import os, tempfile
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.rmsprop(1e-2)
      >>> params = {"w": jnp.ones(3)}
      >>> path = os.path.join(tempfile.mkdtemp(), "step_100.npz")
      >>> gradtx.save_checkpoint(path, {"params": params, "opt_state": tx.init(params)})
      >>> os.path.exists(path)
      True
    """
    leaves, treedef = jax.tree.flatten(tree)
    paths = leaf_paths(tree)
    for p, leaf in zip(paths, leaves):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError(
                f"the leaf at path {p} is sharded over several processes; this process "
                "cannot read all of it. Checkpoint multi-process state with orbax "
                "(ocp.StandardCheckpointer; see examples/multiprocess.py)."
            )
    with cf.atomic_zip(os.fspath(path)) as zf:
        cf.write_small(zf, "format", np.array(_FORMAT))
        cf.write_small(zf, "structure", np.array(_structure(treedef)))
        cf.write_small(zf, "paths", np.array(paths, dtype=str) if paths else np.zeros(0, str))
        for i, leaf in enumerate(leaves):
            cf.write_small(zf, f"leaf_{i}_dtype", np.array(_dtype_name(leaf)))
            cf.write_small(zf, f"leaf_{i}_shape", np.array(np.shape(leaf), dtype=np.int64))
            if _is_key(getattr(leaf, "dtype", None)):
                cf.write_small(zf, f"leaf_{i}_impl", np.array(str(jax.random.key_impl(leaf))))
                leaf = jax.random.key_data(leaf)
                cf.write_small(zf, f"leaf_{i}_data_shape", np.array(leaf.shape, dtype=np.int64))
            cf.write_bytes(zf, f"leaf_{i}_bytes", np.asarray(leaf))


def _check_paths(paths: list[str], want_paths: list[str]) -> None:
    for got, want in zip(paths, want_paths):
        if got != want:
            raise ValueError(
                f"checkpoint does not match the target tree: it has a leaf at path {got} "
                f"where the target has {want}."
            )
    if len(paths) != len(want_paths):
        more = len(paths) > len(want_paths)
        extra = (paths if more else want_paths)[min(len(paths), len(want_paths))]
        raise ValueError(
            f"checkpoint does not match the target tree: {len(paths)} leaves saved, "
            f"{len(want_paths)} expected; {'the checkpoint' if more else 'the target'} has "
            f"an extra leaf at path {extra}."
        )


def _check_structure(saved: str, target: str) -> None:
    if saved != target:
        at = next((i for i, (a, b) in enumerate(zip(saved, target)) if a != b), None)
        at = min(len(saved), len(target)) if at is None else at
        lo = max(0, at - 40)
        raise ValueError(
            "checkpoint does not match the target tree: same leaf paths but different "
            f"containers: saved ...{saved[lo : at + 40]}..., target "
            f"...{target[lo : at + 40]}... (first difference at character {at}; the full "
            f"structures: saved {saved}, target {target})."
        )


def _x64_hint(saved: str, target: str) -> str:
    """Why a 64-bit leaf meets a 32-bit target, when jax_enable_x64 explains it."""
    if saved.startswith("key<") or target.startswith("key<"):
        return ""
    narrowed = jax.dtypes.canonicalize_dtype(jnp.dtype(saved))
    if narrowed != jnp.dtype(saved) and narrowed == jnp.dtype(target):
        return (
            " The checkpoint holds 64-bit values and jax_enable_x64 is off here, so the "
            "target was built in 32 bits: enable jax_enable_x64 (as the saving run had "
            "it) to restore them."
        )
    return ""


def _restored(zf, path: str, i: int, dtype_name: str, shape: tuple) -> Any:
    if dtype_name.startswith("key<"):
        impl = str(cf.read_small(zf, path, f"leaf_{i}_impl"))
        data_shape = tuple(int(n) for n in cf.read_small(zf, path, f"leaf_{i}_data_shape"))
        data = cf.read_bytes(zf, path, f"leaf_{i}_bytes", np.uint32, data_shape)
        return jax.random.wrap_key_data(jnp.asarray(data), impl=impl)
    array = cf.read_bytes(zf, path, f"leaf_{i}_bytes", jnp.dtype(dtype_name), shape)
    if jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:
        return array  # 64-bit with jax_enable_x64 off: JAX would truncate it
    return jax.device_put(array, may_alias=True)


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    r"""Read the tree saved at ``path`` into a tree shaped like ``like``, bit for bit.

    A stored tree whose leaf paths, containers (by type name: a flax ``TrainState``'s
    functions or an equinox module's static fields are not compared), shapes or dtypes
    differ from ``like``'s raises ``ValueError`` naming the first difference, before any
    leaf is read; so does a file that is not a gradtx checkpoint or is truncated or
    damaged. Nothing is modified either way. Leaves are read one at a time, in chunks.

    Args:
      path: a file written by ``gradtx.save_checkpoint``.
      like: the expected tree: arrays or ``jax.ShapeDtypeStruct`` leaves (for instance
        ``tx.init(params)``, or ``jax.eval_shape(tx.init, params)`` to allocate nothing).

    Returns:
      A new pytree with exactly the saved bits: ``jax.Array`` leaves (typed PRNG keys
      as keys of the saved implementation), except that a 64-bit leaf restored with
      ``jax_enable_x64`` off is a NumPy array of the saved dtype, which JAX would
      truncate to 32 bits.

    Example:
      >>> import os, tempfile
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> tx = gradtx.rprop()
      >>> params = {"w": jnp.array([0.5, -1.0])}
      >>> state = tx.update({"w": jnp.array([1.0, -1.0])}, tx.init(params), params)[1]
      >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
      >>> gradtx.save_checkpoint(path, state)
      >>> restored = gradtx.restore_checkpoint(path, like=jax.eval_shape(tx.init, params))
      >>> print(gradtx.rprop_prev_signs(restored)["w"])
      [ 1 -1]
    """
    want_leaves, want_def = jax.tree.flatten(like)
    want_paths = leaf_paths(like)
    path = os.fspath(path)
    with cf.open_archive(path) as zf:
        fmt = str(cf.read_small(zf, path, "format")) if cf.has(zf, "format") else None
        if fmt not in _READS:
            if fmt and fmt.startswith("gradtx-checkpoint"):
                raise ValueError(
                    f"{path!r} is a gradtx checkpoint of format {fmt!r}, which this gradtx "
                    f"cannot read (it reads {', '.join(_READS)}): restore it with the "
                    "gradtx version that wrote it."
                )
            raise ValueError(
                f"{path!r} is a zip (.npz) archive but not a gradtx checkpoint: it has no "
                f"gradtx format entry (its first entries: {zf.namelist()[:5]}); pass a file "
                "written by gradtx.save_checkpoint."
            )
        _check_paths([str(p) for p in cf.read_small(zf, path, "paths")], want_paths)
        if fmt != "gradtx-checkpoint-1":
            _check_structure(str(cf.read_small(zf, path, "structure")), _structure(want_def))
        stored = []
        for i, (p, want) in enumerate(zip(want_paths, want_leaves)):
            name = str(cf.read_small(zf, path, f"leaf_{i}_dtype"))
            shape = tuple(int(n) for n in cf.read_small(zf, path, f"leaf_{i}_shape"))
            want_name, want_shape = _dtype_name(want), tuple(np.shape(want))
            if shape != want_shape or name != want_name:
                raise ValueError(
                    f"checkpoint does not match the target tree at path {p}: saved "
                    f"{name}{list(shape)}, target {want_name}{list(want_shape)}."
                    + _x64_hint(name, want_name)
                )
            stored.append((name, shape))
        leaves = [_restored(zf, path, i, *s) for i, s in enumerate(stored)]
    return jax.tree.unflatten(want_def, leaves)
