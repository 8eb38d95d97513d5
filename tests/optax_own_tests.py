"""Run optax's own test files with gradtx's same-named constructors in optax's place.

Not collected by pytest (no ``test_`` prefix): a tool, run before and after a change to
see that optax's own tests still pass against gradtx where they passed::

    python tests/optax_own_tests.py OUT.json [optax test files relative to optax/ ...]

Every attribute of every loaded ``optax`` module that names a public gradtx constructor
(``chain``, ``masked``, ``MultiSteps``, ``trace``, ``linear_schedule``, ...) is replaced by
gradtx's, so optax's tests (and optax's own aliases built from those blocks) run on
gradtx's objects; then pytest runs the files and OUT.json records each test's outcome.
Tests that fail on gradtx for documented differences (state layouts, numbers where optax
is wrong) fail both before and after: compare the two records, not the counts alone.

Last run (2026-12-07, the 8 default files): 102 passed, 4 failed (5 with a subtest), each
for a documented difference: two expect optax's own ``MaskedNode`` class, one
``update(None, ...)`` (gradtx refuses a state that is not its own), one optax's stateful
schedules, one integer gradients (gradtx refuses them, naming the path). The run before
(issue 26) had 8 failures: ``ema(decay=0.0)``'s math domain error (4, since fixed); this
run found a typed PRNG key hyperparameter failing under ``jax.jit(init)`` (now fixed).
Also run on clipping, transform, update, freezing, layouts and float64: 74 passed, 12
failed, each documented: gradtx's own state types (freezing's 7, two of them expecting
jax's "Dict key mismatch" where gradtx names the mask's structure), ``update`` given
``{}`` for a stateless block's state, the 1 - β^t bias correction (``rms_match_adam``), a
negative ``add_decayed_weights`` (fromage's; refused, as torch refuses it), and
``clip_by_block_rms``'s RMS one ulp under 1.0 in one case (over 162 random cases gradtx
and optax miss the threshold by the same amounts: max 1.9e-7 relative, mean 5.1e-8).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

DEFAULT = [
    "transforms/_combining_test.py",
    "transforms/_masking_test.py",
    "transforms/_accumulation_test.py",
    "transforms/_conditionality_test.py",
    "transforms/_adding_test.py",
    "schedules/_inject_test.py",
    "_src/combine_test.py",
    "_src/base_test.py",
]


NOT_CONSTRUCTORS = {
    "apply_updates",
    "constructor",
    "global_norm",
    "leafwise",
    "restore_checkpoint",
    "save_checkpoint",
    "set_hyperparams",
    "skip_not_finite",
}


def patch() -> list[str]:
    import optax  # noqa: F401 (loads optax's modules)

    import gradtx

    # the constructors (a list, not gradtx._values's, so that it runs on older gradtx too)
    names = [
        n
        for n in gradtx.__all__
        if (callable(getattr(gradtx, n)) and not isinstance(getattr(gradtx, n), type))
        or n == "MultiSteps"
    ]
    names = [n for n in names if n not in NOT_CONSTRUCTORS]
    patched = []
    for module_name, module in list(sys.modules.items()):
        # optax.tree's functions (tree.scale, tree.clip) share names, not meaning
        if not module_name.startswith("optax") or module_name == "optax.tree" or module is None:
            continue
        for name in names:
            if name in getattr(module, "__dict__", {}) and callable(module.__dict__[name]):
                setattr(module, name, getattr(gradtx, name))
                patched.append(f"{module_name}.{name}")
    return patched


class Record:
    def __init__(self):
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.outcome != "passed":
            self.outcomes[report.nodeid] = report.outcome


def main(argv: list[str]) -> int:
    out, files = argv[0], argv[1:] or DEFAULT
    import optax

    root = os.path.dirname(optax.__file__)
    patched = patch()
    record = Record()
    pytest.main(
        ["-q", "-p", "no:cacheprovider", "--rootdir", root]
        + [os.path.join(root, f) for f in files],
        plugins=[record],
    )
    counts = {k: sum(v == k for v in record.outcomes.values()) for k in ("passed", "failed")}
    with open(out, "w") as f:
        json.dump({"patched": patched, "counts": counts, "outcomes": record.outcomes}, f, indent=1)
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
