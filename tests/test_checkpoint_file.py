"""The checkpoint file (gradtx/_checkpoint_file.py), the .npz layer under
gradtx.save_checkpoint / restore_checkpoint: a file that is not a checkpoint (a .npy, a
text file, a truncated or damaged archive, an entry of the wrong size; and, from the
format check above it in _checkpoint.py, a foreign .npz or a newer format) is refused
saying what it is not; a new file gets the permissions open() gives one under the umask;
a symlink stays and its target is written; a save killed mid-way (kill -9, in a child
process) leaves the old file, and the next save removes its temporary. The round trips,
trees and processes: test_checkpoint.py."""

import os
import pathlib
import stat
import subprocess
import sys
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _bad_files(tmp_path) -> dict:
    good = tmp_path / "good.npz"
    marker = np.full(64, 0x5A, np.uint8)
    gradtx.save_checkpoint(good, {"w": marker})
    raw = good.read_bytes()
    files = {}
    np.save(tmp_path / "a.npy", np.zeros(3))
    files["a.npy"] = r"NumPy \.npy file \(one array\), not a gradtx checkpoint"
    (tmp_path / "notes.txt").write_text("step 100: loss 0.3\n")
    files["notes.txt"] = r"not a gradtx checkpoint: not a zip \(\.npz\) archive"
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    files["truncated.npz"] = r"not a complete zip archive.*truncated or damaged"
    at = raw.index(marker.tobytes())
    (tmp_path / "flipped.npz").write_bytes(raw[:at] + b"\x5b" + raw[at + 1 :])
    files["flipped.npz"] = r"damaged gradtx checkpoint: entry 'leaf_0_bytes' cannot be read"
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    files["other.npz"] = r"zip \(\.npz\) archive but not a gradtx checkpoint"
    for name, entry, value, message in [
        ("short.npz", "leaf_0_bytes", marker[:10], r"holds uint8\[10\] where the leaf"),
        ("shape.npz", "leaf_0_shape", np.array([65]), r"holds uint8\[64\].*needs 65 bytes"),
        ("future.npz", "format", np.array("gradtx-checkpoint-9"), r"format 'gradtx-check"),
    ]:
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(tmp_path / name, "w") as dst:
            for info in src.infolist():
                if info.filename == entry + ".npy":
                    with dst.open(info.filename, "w") as f:
                        np.lib.format.write_array(f, value)
                else:
                    dst.writestr(info, src.read(info))
        files[name] = message
    return files


def test_a_file_that_is_not_a_checkpoint_says_what_it_is_not(tmp_path):
    like = {"w": jax.ShapeDtypeStruct((64,), jnp.uint8)}
    for name, message in _bad_files(tmp_path).items():
        like_here = {"w": jax.ShapeDtypeStruct((65,), jnp.uint8)} if name == "shape.npz" else like
        with pytest.raises(ValueError, match=message):
            gradtx.restore_checkpoint(tmp_path / name, like_here)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_umasks_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        gradtx.save_checkpoint(tmp_path / "c.npz", {"a": jnp.ones(2)})
        with open(tmp_path / "plain", "w"):  # what open() gives a new file
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "c.npz").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == 0o666 & ~umask


def test_a_symlink_stays_and_its_target_is_written(tmp_path):
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "real.npz"
    gradtx.save_checkpoint(target, {"a": jnp.zeros(2)})
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    gradtx.save_checkpoint(link, {"a": jnp.ones(2)})
    assert link.is_symlink() and os.path.samefile(link, target)
    chex.assert_trees_all_equal(
        gradtx.restore_checkpoint(target, {"a": jnp.zeros(2)})["a"], jnp.ones(2)
    )
    assert sorted(os.listdir(tmp_path / "runs")) == ["real.npz"]


_KILLED_SAVE = """
import os, signal, sys
import jax.numpy as jnp
import gradtx
from gradtx import _checkpoint_file as cf
write = cf.write_bytes
def write_then_die(*args):
    write(*args)
    os.kill(os.getpid(), signal.SIGKILL)  # as kill -9 in the middle of a save
cf.write_bytes = write_then_die
gradtx.save_checkpoint(sys.argv[1], {"a": jnp.full(4, 2.0), "b": jnp.ones(3)})
"""


def test_a_killed_save_leaves_the_old_file_and_the_next_save_removes_its_temporary(tmp_path):
    path = tmp_path / "c.npz"
    like = {"a": jnp.zeros(4), "b": jnp.zeros(3)}
    gradtx.save_checkpoint(path, like)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], env=env, timeout=120)
    assert proc.returncode == -9
    orphans = [n for n in os.listdir(tmp_path) if n != "c.npz"]
    assert len(orphans) == 1 and orphans[0].startswith(".c.npz.gradtx-tmp-")
    chex.assert_trees_all_equal(gradtx.restore_checkpoint(path, like), like)  # old file
    gradtx.save_checkpoint(path, {"a": jnp.ones(4), "b": jnp.ones(3)})
    assert os.listdir(tmp_path) == ["c.npz"]
    chex.assert_trees_all_equal(gradtx.restore_checkpoint(path, like)["a"], jnp.ones(4))
