"""Checkpoints: save a pytree of arrays (params, optimizer state, both) to one ``.npz``
file and restore it into a tree of the same structure, bit for bit.

gradtx state is a pytree of arrays with a structure fixed by the transform and the
params, so a checkpoint is just its leaves and a description of its structure. Each leaf
is stored as its raw bytes with its dtype name and shape (exact for every dtype,
bfloat16 and complex included, with no pickling); the tree structure is stored as text
and, for error messages, the path of each leaf. ``restore_checkpoint(path, like)``
checks the stored structure, paths, shapes and dtypes against ``like`` (a tree of
arrays or of ``jax.ShapeDtypeStruct``, e.g. ``tx.init(params)`` or
``jax.eval_shape(tx.init, params)``) before building anything, and raises
``ValueError`` naming the first difference; it returns a new tree and changes nothing.

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
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradtx._trees import leaf_paths

_FORMAT = "gradtx-checkpoint-1"


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    """The leaf paths (named as every gradtx error names them), leaves and structure."""
    leaves, treedef = jax.tree.flatten(tree)
    return leaf_paths(tree), leaves, treedef


def save_checkpoint(path: str | os.PathLike, tree: Any) -> None:
    r"""Write a pytree of arrays (params, optimizer state, both) to one ``.npz`` file.

    Each leaf is stored as its raw bytes with its dtype and shape, so restoring is bit for
    bit for every dtype. The file is written to a temporary name and renamed, so an
    interrupted save never leaves a half-written checkpoint at ``path``. Call it outside
    ``jit`` (it reads the arrays to the host). A leaf sharded over several processes
    raises ``ValueError``: use orbax for those (``examples/multiprocess.py``).

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
    paths, leaves, treedef = _flatten(tree)
    for p, leaf in zip(paths, leaves):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError(
                f"the leaf at path {p} is sharded over several processes; this process "
                "cannot read all of it. Checkpoint multi-process state with orbax "
                "(ocp.StandardCheckpointer; see examples/multiprocess.py)."
            )
    arrays = {
        "format": np.array(_FORMAT),
        "treedef": np.array(str(treedef)),
        "paths": np.array(paths, dtype=str) if paths else np.zeros(0, dtype=str),
    }
    for i, leaf in enumerate(leaves):
        a = np.asarray(jax.device_get(leaf))
        arrays[f"leaf_{i}_bytes"] = np.frombuffer(a.tobytes(), np.uint8)
        arrays[f"leaf_{i}_dtype"] = np.array(a.dtype.name)
        arrays[f"leaf_{i}_shape"] = np.array(a.shape, dtype=np.int64)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def restore_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    r"""Read the tree saved at ``path`` into a tree shaped like ``like``, bit for bit.

    A stored tree whose structure, leaf paths, shapes or dtypes differ from ``like``'s
    raises ``ValueError`` naming the first difference; nothing is modified either way.

    Args:
      path: a file written by :func:`save_checkpoint`.
      like: the expected tree: arrays or ``jax.ShapeDtypeStruct`` leaves (for instance
        ``tx.init(params)``, or ``jax.eval_shape(tx.init, params)`` to allocate nothing).

    Returns:
      A new pytree of ``jax.Array`` with exactly the saved bits.

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
    want_paths, want_leaves, want_def = _flatten(like)
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != _FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a gradtx checkpoint.")
        paths = [str(p) for p in data["paths"]]
        stored_def = str(data["treedef"])
        for got, want in zip(paths, want_paths):
            if got != want:
                raise ValueError(
                    f"checkpoint does not match the target tree: it has a leaf at path {got} "
                    f"where the target has {want}."
                )
        if len(paths) != len(want_paths):
            extra = (paths if len(paths) > len(want_paths) else want_paths)[
                min(len(paths), len(want_paths))
            ]
            which = "the checkpoint" if len(paths) > len(want_paths) else "the target"
            raise ValueError(
                f"checkpoint does not match the target tree: {len(paths)} leaves saved, "
                f"{len(want_paths)} expected; {which} has an extra leaf at path {extra}."
            )
        if stored_def != str(want_def):
            raise ValueError(
                "checkpoint does not match the target tree: same leaf paths but different "
                f"containers: saved {stored_def}, target {want_def}."
            )
        arrays = []
        for i, (p, want) in enumerate(zip(paths, want_leaves)):
            dtype = jnp.dtype(str(data[f"leaf_{i}_dtype"]))
            shape = tuple(int(n) for n in data[f"leaf_{i}_shape"])
            want_shape, want_dtype = tuple(np.shape(want)), jnp.dtype(_dtype_of(want))
            if shape != want_shape or dtype != want_dtype:
                raise ValueError(
                    f"checkpoint does not match the target tree at path {p}: saved "
                    f"{dtype.name}{list(shape)}, target {want_dtype.name}{list(want_shape)}."
                )
            raw = data[f"leaf_{i}_bytes"]
            arrays.append(np.frombuffer(raw.tobytes(), dtype).reshape(shape))
    return jax.tree.unflatten(want_def, [jnp.asarray(a) for a in arrays])


def _dtype_of(leaf: Any) -> Any:
    return leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
