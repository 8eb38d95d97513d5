"""The checkpoint file, one leaf at a time: a ``.npz`` archive (a zip of uncompressed
``.npy`` entries, so NumPy can open it too) written and read in chunks, so that neither
saving nor restoring holds a second copy of the state; written to a temporary file
beside the target and renamed over it, with the permissions of a newly created file."""

from __future__ import annotations

import contextlib
import os
import secrets
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

CHUNK = 4 << 20
"""Bytes copied at a time: the only buffer saving or restoring adds to one leaf."""
_ALIGN = 64
_TMP = ".gradtx-tmp-"


class CheckpointFileError(ValueError):
    """The file at the path is not (or no longer) a readable gradtx checkpoint."""


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------


def write_small(zf: zipfile.ZipFile, name: str, value: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, value, allow_pickle=False)


def write_bytes(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """``array``'s raw bytes as a one-dimensional uint8 ``.npy`` entry, in chunks."""
    data = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    header = {"descr": "|u1", "fortran_order": False, "shape": (len(data),)}
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, len(data), CHUNK):
            f.write(data[start : start + CHUNK])


def _stale_temporaries(folder: str, base: str) -> Iterator[str]:
    """Temporaries of earlier saves to the same target whose process has ended."""
    prefix = f".{base}{_TMP}"
    for entry in os.listdir(folder):
        if not entry.startswith(prefix):
            continue
        pid = entry[len(prefix) :].split("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            yield os.path.join(folder, entry)
        except OSError:  # alive, another user's
            pass


@contextlib.contextmanager
def atomic_zip(path: str) -> Iterator[zipfile.ZipFile]:
    """A zip archive written to a temporary beside ``path`` (through a symlink, beside
    its target) and renamed over it once complete; removed if the write fails."""
    target = os.path.realpath(path)
    folder, base = os.path.split(target)
    for stale in _stale_temporaries(folder, base):
        with contextlib.suppress(OSError):
            os.remove(stale)
    tmp = os.path.join(folder, f".{base}{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                yield zf
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------


def open_archive(path: str) -> zipfile.ZipFile:
    """The zip archive at ``path``, or ``CheckpointFileError`` saying what it is not."""
    shown = repr(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointFileError(
            f"{shown} is a NumPy .npy file (one array), not a gradtx checkpoint: pass a "
            "file written by gradtx.save_checkpoint."
        )
    if not head.startswith(b"PK"):
        raise CheckpointFileError(
            f"{shown} is not a gradtx checkpoint: not a zip (.npz) archive (it starts "
            f"with {head!r}); pass a file written by gradtx.save_checkpoint."
        )
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointFileError(
            f"{shown} is not a complete zip archive ({e}): the file is truncated or "
            "damaged, so it is not a readable gradtx checkpoint. Restore an earlier copy."
        ) from None


def _damaged(path: str, what: str) -> CheckpointFileError:
    return CheckpointFileError(
        f"{path!r} is a damaged gradtx checkpoint: {what}. Restore an earlier copy."
    )


@contextlib.contextmanager
def _entry(zf: zipfile.ZipFile, path: str, name: str) -> Iterator[Any]:
    try:
        with zf.open(name + ".npy") as f:
            yield f
    except KeyError:
        raise _damaged(path, f"it has no entry {name!r}") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, CheckpointFileError):
            raise
        raise _damaged(path, f"entry {name!r} cannot be read ({e})") from None


def read_small(zf: zipfile.ZipFile, path: str, name: str) -> np.ndarray:
    with _entry(zf, path, name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def has(zf: zipfile.ZipFile, name: str) -> bool:
    return name + ".npy" in zf.NameToInfo


def read_bytes(zf: zipfile.ZipFile, path: str, name: str, dtype, shape: tuple) -> np.ndarray:
    """The leaf stored in entry ``name``, read in chunks into one aligned buffer (which
    the CPU backend then uses as it is)."""
    dtype = np.dtype(dtype)
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with _entry(zf, path, name) as f:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise _damaged(path, f"entry {name!r} has an unknown .npy version {version}")
        stored_shape, _, stored_dtype = read_header(f)
        if stored_dtype != np.uint8 or len(stored_shape) != 1 or stored_shape[0] != need:
            raise _damaged(
                path,
                f"entry {name!r} holds {stored_dtype}{list(stored_shape)} where the leaf, "
                f"{dtype.name}{list(shape)}, needs {need} bytes (uint8[{need}])",
            )
        raw = np.empty(need + _ALIGN, np.uint8)
        offset = -raw.ctypes.data % _ALIGN
        buf = raw[offset : offset + need]
        view, done = memoryview(buf), 0
        while done < need:
            chunk = f.read(min(CHUNK, need - done))
            if not chunk:
                raise _damaged(path, f"entry {name!r} ends after {done} of {need} bytes")
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        f.read(1)  # reaching the end checks the entry's CRC
    return buf.view(dtype).reshape(shape)
