"""Sharding on 8 simulated CPU devices: the cases are in ``tests/sharding_cases.py``.

They need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax starts, and
this process (like every other test) runs on one device, so they run in a child pytest
process with that flag; its report is shown when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
