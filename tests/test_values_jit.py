"""A transform as an argument of jitted functions (issue 26): a rebuilt-alike transform does
not retrace, as a static argument, as a plain argument and under equinox's ``filter_jit``;
the numbers are those of the same transform closed over, bit for bit; a new learning rate
is a new transform (it compiles again) unless it is injected. And the protocol with and
without optax imported.

``python tests/test_values_jit.py`` prints the table of issue 26's "must show"."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

import gradtx

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([0.3])}
SGD = optax.sgd(0.1)  # one optax object, reused: members compare by identity


def grads_at(i):
    return jax.tree.map(lambda p: jnp.sin(p * (i + 1.7)) + 0.1 * i, PARAMS)


@gradtx.constructor
def signum(learning_rate, beta=0.9):  # a transform written with gradtx.leafwise
    def rule(g, m):
        m = beta * m + (1 - beta) * g
        return -learning_rate * jnp.sign(m), (m,)

    return gradtx.leafwise(rule, state=gradtx.TraceState, init_leaf=lambda p: (jnp.zeros_like(p),))


# kind -> (example, a function of the learning rate that builds it)
KINDS = {
    "alias": ("rmsprop(lr, momentum=0.9)", lambda lr: gradtx.rmsprop(lr, momentum=0.9)),
    "alias (rprop)": ("rprop(lr)", lambda lr: gradtx.rprop(lr)),
    "block": ("scale_by_learning_rate(lr)", lambda lr: gradtx.scale_by_learning_rate(lr)),
    "combinator": (
        "chain(clip(1.0), rmsprop(lr))",
        lambda lr: gradtx.chain(gradtx.clip(1.0), gradtx.rmsprop(lr)),
    ),
    "wrapper": (
        "apply_if_finite(rmsprop(lr), 3)",
        lambda lr: gradtx.apply_if_finite(gradtx.rmsprop(lr), 3),
    ),
    "inject_hyperparams": (
        "inject_hyperparams(rmsprop)(learning_rate=lr)",
        lambda lr: gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=lr),
    ),
    "MultiSteps": (
        "MultiSteps(rmsprop(lr), 2)",
        lambda lr: gradtx.MultiSteps(gradtx.rmsprop(lr), 2),
    ),
    "flatten": ("flatten(rprop(lr))", lambda lr: gradtx.flatten(gradtx.rprop(lr))),
    "optax in a gradtx chain": (
        "chain(SGD, rmsprop(lr)), SGD one optax object",
        lambda lr: gradtx.chain(SGD, gradtx.rmsprop(lr)),
    ),
    "written with leafwise": ("signum(lr) (@gradtx.constructor)", lambda lr: signum(lr)),
}


def _step(tx, params, state, grads):
    return tx.update(grads, state, params)


def _run(step, build, lr=0.1, steps=3):
    """``steps`` updates, each with a freshly built transform; the updates of each step."""
    out, state = [], build(lr).init(PARAMS)
    for i in range(steps):
        updates, state = step(build(lr), PARAMS, state, grads_at(i))
        out.append(updates)
    return out


def _counting(fn):
    calls = []

    def counted(*args):
        calls.append(1)
        return fn(*args)

    return counted, calls


def measure(build, full=True):
    """Traces of three rebuilt-alike transforms (static, argument, filter_jit), then after
    a new learning rate (argument), and whether each way gave the closed-over numbers."""
    tx = build(0.1)
    closed = _run(lambda _, p, s, g: jax.jit(tx.update)(g, s, p), build)
    result = {}
    ways = {"static": lambda f: jax.jit(f, static_argnums=0), "argument": jax.jit}
    if full:
        ways["filter_jit"] = eqx.filter_jit
    for way, jit in ways.items():
        counted, calls = _counting(_step)
        step = jit(counted)
        got = _run(step, build)
        chex.assert_trees_all_equal(got, closed)  # bit for bit
        result[way] = len(calls)
        if way == "argument" and full:
            _run(step, build, lr=0.2, steps=1)
            result["new lr"] = len(calls) - result[way]
    return result


# every kind: static and plain argument; these also under filter_jit and with a new lr
FULL = ("alias", "alias (rprop)", "inject_hyperparams", "written with leafwise")


@pytest.mark.parametrize("kind", list(KINDS))
def test_rebuilt_alike_does_not_retrace_and_gives_the_closed_over_numbers(kind):
    build = KINDS[kind][1]
    assert build(0.1) == build(0.1) and hash(build(0.1)) == hash(build(0.1))
    traces = measure(build, full=kind in FULL)
    want = {"static": 1, "argument": 1}
    if kind in FULL:
        want |= {"new lr": 1, "filter_jit": 1}  # a new learning rate: a new transform
    assert traces == want


def test_assert_max_traces_static_argument():
    """The issue's own check: chex.assert_max_traces(n=1) over three rebuilt rmsprop."""
    step = jax.jit(chex.assert_max_traces(_step, n=1), static_argnums=0)
    _run(step, lambda lr: gradtx.rmsprop(lr, momentum=0.9))
    step = jax.jit(chex.assert_max_traces(lambda *a: _step(*a), n=1))
    _run(step, lambda lr: gradtx.rprop(lr))


def test_injected_learning_rate_changes_without_recompiling():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    step = jax.jit(chex.assert_max_traces(_step, n=1))
    state = tx.init(PARAMS)
    for i, lr in enumerate((0.1, 0.05, 0.01)):
        state = gradtx.set_hyperparams(state, learning_rate=lr)
        _, state = step(
            gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1), PARAMS, state, grads_at(i)
        )
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)


def test_transform_inside_an_equinox_module():
    class Trainer(eqx.Module):
        tx: gradtx.GradientTransformation
        scale: jax.Array

    step = eqx.filter_jit(chex.assert_max_traces(lambda m, s, g: m.tx.update(g, s, PARAMS), n=1))
    state = gradtx.rprop(0.1).init(PARAMS)
    for i in range(3):
        _, state = step(Trainer(gradtx.rprop(0.1), jnp.ones(2)), state, grads_at(i))


def test_init_under_jit_with_the_transform_as_argument():
    init = jax.jit(chex.assert_max_traces(lambda tx, p: tx.init(p), n=1))
    for _ in range(3):
        chex.assert_trees_all_equal(
            init(gradtx.rmsprop(0.1, centered=True), PARAMS),
            gradtx.rmsprop(0.1, centered=True).init(PARAMS),
        )


PROTOCOL = """
import sys
import jax, jax.numpy as jnp
import gradtx
assert "optax" not in sys.modules, "gradtx imported optax"
tx = gradtx.rmsprop(0.1)
assert tx.__class__ is gradtx.GradientTransformation is type(tx)
assert isinstance(tx, gradtx.GradientTransformation) and isinstance(tx, tuple)
init, update = tx
assert tx == gradtx.rmsprop(0.1) and hash(tx) == hash(gradtx.rmsprop(0.1))
params = {"w": jnp.ones(2)}
u, _ = jax.jit(lambda t, s: t.update(params, s, params))(tx, tx.init(params))
assert "optax" not in sys.modules
import optax
assert isinstance(tx, optax.GradientTransformationExtraArgs)
assert type(tx) is gradtx.GradientTransformation
print("ok")
"""


def test_protocol_without_optax_then_with_it():
    """In a fresh process: without optax, ``__class__`` is gradtx's own class; once optax
    is imported the same object reports optax's ``GradientTransformationExtraArgs``."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROTOCOL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def table() -> str:
    rows = [
        "| kind | example | equal and hash equal, built alike "
        "| traces, 3 rebuilt (static / argument / filter_jit) | new learning rate (argument) |",
        "|---|---|---|---|---|",
    ]
    for kind, (example, build) in KINDS.items():
        equal = build(0.1) == build(0.1) and hash(build(0.1)) == hash(build(0.1))
        t = measure(build)
        cost = "retrace (1 more)" if t["new lr"] else "no retrace"
        rows.append(
            f"| {kind} | `{example}` | {'yes' if equal else 'NO'} "
            f"| {t['static']} / {t['argument']} / {t['filter_jit']} | {cost} |"
        )
    rows.append(
        "| inject_hyperparams | `set_hyperparams(state, learning_rate=...)` | yes "
        "| 1 | no retrace |"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
