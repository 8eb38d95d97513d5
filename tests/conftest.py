"""Test-wide set-up: float64 is enabled so float64 parity can be tested; and the parity
report (every comparison with an outside reference that went through
``tests/_tolerance.check``: its error and its tolerance, side by side) at the end of
the session.

Tests state every dtype they use explicitly; nothing relies on the default dtype.
"""

import functools
import os
import re
import shutil
import tempfile

import jax
import jax.numpy as jnp
import pytest
from hypothesis import settings

jax.config.update("jax_enable_x64", True)

# Most of the suite's time is XLA:CPU compiling small, mostly 2-D programs, which its older
# loop emitters compile faster than the default fusion emitters (docs/performance.md,
# "Compile time"). Set before any backend starts (and inherited by the tests' child
# processes), unless XLA_FLAGS already chooses: CI runs the parity tests again with the
# default emitters (.ci/run).
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false"
    ).strip()

# Every run draws the same hypothesis examples (CI's, a new user's, a reviewer's), so the
# suite cannot fail by the luck of the draw; `--hypothesis-profile=explore` draws new ones
# to hunt for bugs (as the runs that found rmsprop's scheduled weight decay rounding
# differently under jit, and a schedule's subnormal end flushed to 0, did).
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("fixed")

# One XLA compilation cache for this run, shared by its xdist workers: many tests compile
# the same program (the same transform on the same shapes) from new closures, which the
# in-memory jit cache cannot see; the executable, and so every number, is the same.
# A fresh directory per run (named by the pid of the run's main process: an xdist
# worker's parent), so no run reads another's; the main process removes it at the end.
_RUN = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
jax.config.update(
    "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), f"gradtx-xla-{_RUN}")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@functools.cache
def _float16_unsupported() -> str | None:
    """Why XLA cannot run float16 here, or None. XLA:CPU restricted to an instruction set
    without F16C (``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``) fails to compile any float16
    kernel ("Failed to materialize symbols"): a limit of XLA, not of gradtx."""
    try:
        jax.block_until_ready(jnp.ones(2, jnp.float16) * 2)
    except Exception as e:  # any compile failure is the answer
        return f"XLA cannot compile float16 on this host ISA ({type(e).__name__})"
    return None


# pytest-xdist hands out whole files (pyproject: --dist loadfile); these first, the
# slowest (CPU seconds on 2 cores, about 20-50 each), so that no worker is left running
# one of them while the other has finished. The rest follow in collection order.
SLOWEST_FIRST = [
    "tests/parity/test_torch_matrix.py",
    "tests/test_rms.py",
    "tests/test_base.py",
    "tests/properties/test_properties.py",
    "tests/test_aliases.py",
    "tests/docs/test_docs_site.py",
    "tests/parity/test_torch_bridge.py",
    "tests/docs/test_docs_code.py",
    "tests/test_checkpoint.py",
    "tests/parity/test_optax.py",
]


def pytest_collection_modifyitems(config, items):
    """The slowest files first (:data:`SLOWEST_FIRST`); float16 cases skipped, with the
    reason, where XLA cannot compile float16 at all."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
    reason = _float16_unsupported()
    if reason is None:
        return
    for item in items:
        if re.search(r"(?<!b)float16", item.nodeid):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Where XLA cannot compile float16 at all, a test that uses float16 inside (not in its
    id) and fails with exactly that compile error is skipped with the reason, not failed."""
    outcome = yield
    reason = _float16_unsupported()
    if reason is None or outcome.excinfo is None:
        return
    error = outcome.excinfo[1]
    if type(error).__name__ == "JaxRuntimeError" and "Failed to materialize symbols" in str(error):
        outcome.force_exception(pytest.skip.Exception(reason + "; float16 inside the test"))


def pytest_sessionfinish(session):
    """Under pytest-xdist, each worker sends its parity cases to the controller, which
    prints the one report (:func:`pytest_testnodedown` merges them)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is None:  # the controller (or a run without workers): drop the cache
        shutil.rmtree(jax.config.jax_compilation_cache_dir, ignore_errors=True)
    if workeroutput is not None:
        from tests import _tolerance as h

        workeroutput["gradtx_parity"] = h.report_rows()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    from tests import _tolerance as h

    for row in getattr(node, "workeroutput", {}).get("gradtx_parity", []):
        h.record_row(row)


def pytest_terminal_summary(terminalreporter):
    from tests import _tolerance as h

    if getattr(terminalreporter.config, "workeroutput", None) is not None or not h.REPORT:
        return
    tr = terminalreporter
    tr.section("parity: scaled error max|ours - theirs| / max|theirs| over steps, and tolerance")
    tr.write_line(
        f"tolerance = max({h.FACTOR} x d_self, {h.FLOOR_ULPS} ulp x steps); d_self = the "
        "reference against itself with its params or its gradients one ulp up"
    )
    head = (
        "reference",
        "precision",
        "cases",
        "max error",
        "its tol",
        "worst err/tol",
        "tolerances",
    )
    rows = []
    for ref in sorted(h.REPORT):
        for prec, cases in sorted(h.REPORT[ref]["cases"].items()):
            err, tol, _ = max(cases, key=lambda c: (c[0], c[1].value))
            ratio = max((e / t.value if t.value else 0.0) for e, t, _ in cases)
            tols = sorted(t.value for _, t, _ in cases)
            span = f"{tols[0]:.1e}" if tols[0] == tols[-1] else f"{tols[0]:.1e}..{tols[-1]:.1e}"
            rows.append(
                (ref, prec, str(len(cases)), f"{err:.2e}", f"{tol.value:.1e}", f"{ratio:.3f}", span)
            )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        tr.write_line("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    path = os.environ.get("GRADTX_PARITY_CASES")
    if path:  # every case, one a line (by configuration: xdist's workers finish in any order)
        with open(path, "w") as f:
            f.write("reference\tconfig\tprecision\terror\ttolerance\td_self\tfloor\n")
            for ref in sorted(h.REPORT):
                for prec, cases in sorted(h.REPORT[ref]["cases"].items()):
                    for err, tol, config in sorted(cases, key=lambda c: c[2]):
                        f.write(
                            f"{ref}\t{config}\t{prec}\t{err:.3e}\t{tol.value:.3e}\t"
                            f"{tol.d_self:.3e}\t{tol.floor:.3e}\n"
                        )
        tr.write_line(f"every case: {path}")
