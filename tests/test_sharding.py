"""Sharding on 8 simulated CPU devices: the cases are in ``tests/sharding_cases.py``.

They need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax starts, and
this process (like every other test) runs on one device, so they run in a child pytest
process with that flag; its report is shown when it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gradtx

HERE = Path(__file__).parent
pytestmark = pytest.mark.multiprocess  # not in the default run: -m multiprocess


def test_sharding_cases_on_8_simulated_devices():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    source_root = str(Path(gradtx.__file__).resolve().parents[1])  # the gradtx under test
    path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-rs"]
    result = subprocess.run(
        [*cmd, str(HERE / "sharding_cases.py")],
        env=env,
        cwd=HERE.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "skipped" not in result.stdout, report


# ---------------------------------------------------------------------------------------
# Two processes, for real: ``jax.distributed`` over 2 processes with 4 simulated CPU
# devices each (gloo collectives), FSDP-sharded params and gradtx state, data-parallel
# over the 8 global devices, orbax checkpoints of the sharded state (each process writes
# its shards) restored onto the same mesh and onto a different one. The processes run
# ``tests/multiprocess_worker.py``, which describes what each one checks; this test
# starts them (and, beside them, the same training in one process with 8 devices), and
# compares what they wrote:
#
# * the two processes hold identical values wherever both hold a leaf (the replicated
#   ones), and together all of every leaf;
# * their params and state equal the one-process run's to 1e-9 scaled error (float64;
#   the cross-process all-reduce sums in another order);
# * resuming from the checkpoint on 4 devices, replicated, lands on the same numbers to
#   1e-9 too (its bit-identity to resuming from memory is checked in the process).
# ---------------------------------------------------------------------------------------


TIMEOUT_S = 300  # about 30 s here with 2 cores under load; a hang is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(n_devices):
    source_root = str(Path(gradtx.__file__).resolve().parents[1])  # the gradtx under test
    path = os.pathsep.join(p for p in (source_root, os.environ.get("PYTHONPATH")) if p)
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n_devices}"
    return {**os.environ, "XLA_FLAGS": flags.strip(), "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}


def _scaled_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(np.float64).tiny))


def _launch(out):
    """Start both workers and the one-process run; wait for all; kill them on failure."""
    worker = str(HERE / "multiprocess_worker.py")
    address = f"127.0.0.1:{_free_port()}"
    commands = [
        ([sys.executable, worker, "worker", "0", address, out], _env(4)),
        ([sys.executable, worker, "worker", "1", address, out], _env(4)),
        ([sys.executable, worker, "single", out], _env(8)),
    ]
    procs, logs = [], []
    try:
        for i, (cmd, env) in enumerate(commands):
            log = open(os.path.join(out, f"log{i}.txt"), "w+")
            logs.append(log)
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break  # one failed, its partners would wait for it forever
            time.sleep(0.2)
        codes = [p.poll() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    reports = []
    for i, log in enumerate(logs):
        log.seek(0)
        reports.append(f"--- process {i} (exit {codes[i]}) ---\n{log.read()[-4000:]}")
        log.close()
    assert codes == [0, 0, 0], "\n".join(reports)


def test_two_processes_fsdp_training_and_orbax_checkpoints(tmp_path):
    out = str(tmp_path)
    _launch(out)
    workers = [np.load(os.path.join(out, f"worker{i}.npz")) for i in (0, 1)]
    single = np.load(os.path.join(out, "single.npz"))
    reshard = np.load(os.path.join(out, "reshard.npz"))
    leaves = single.files
    assert len(leaves) >= 2 * 8  # rmsprop and rprop: params and their state
    worst = 0.0
    for key in leaves:
        (v0, v1), (h0, h1) = [w[key] for w in workers], [w[f"{key}_held"] for w in workers]
        both = h0 & h1
        assert v0[both].tobytes() == v1[both].tobytes(), key  # replicated parts: identical
        assert (h0 | h1).all(), key  # between them, the processes hold every element
        if v0.ndim and v0.shape[0] % 8 == 0:
            assert not both.any(), key  # FSDP: each process holds its own half
        assembled = np.where(h0, v0, v1)
        assert assembled.dtype == single[key].dtype, key
        worst = max(worst, _scaled_error(assembled, single[key]))
        worst = max(worst, _scaled_error(reshard[key], single[key]))
    print(f"worst scaled error {worst:.2e} over {len(leaves)} leaves")
    assert worst <= 1e-9, worst
