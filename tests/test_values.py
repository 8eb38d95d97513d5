"""Transforms as values (issue 26): every public transform compares and hashes equal to one
built alike and unequal to one built otherwise; a transform is a valid argument of a jitted
function; a rebuilt-alike transform does not retrace (static argument, plain argument,
equinox's ``filter_jit``); and passing it gives the numbers of the same transform closed
over, bit for bit."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import _values

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([0.3])}


def grads_at(i):
    return jax.tree.map(lambda p: jnp.sin(p * (i + 1.7)) + 0.1 * i, PARAMS)


def _rule(g):  # module-level rules: leafwise keys them by identity
    return -g, ()


def _other_rule(g):
    return g, ()


def _all_a(params):  # a module-level labelling function: the same object each time
    return {k: "a" for k in params}


# name -> (build, build otherwise): build() twice must give equal transforms (or schedules)
T = gradtx
SAMPLES = {
    "add_decayed_weights": (
        lambda: T.add_decayed_weights(1e-2),
        lambda: T.add_decayed_weights(1e-3),
    ),
    "apply_every": (lambda: T.apply_every(3), lambda: T.apply_every(2)),
    "apply_if_finite": (
        lambda: T.apply_if_finite(T.rmsprop(0.1), 3),
        lambda: T.apply_if_finite(T.rmsprop(0.1), 4),
    ),
    "chain": (
        lambda: T.chain(T.clip(1.0), T.trace(0.9)),
        lambda: T.chain(T.clip(1.0), T.trace(0.8)),
    ),
    "clip": (lambda: T.clip(1.0), lambda: T.clip(2.0)),
    "clip_by_block_norm": (lambda: T.clip_by_block_norm(1.0), lambda: T.clip_by_block_norm(2.0)),
    "clip_by_block_rms": (lambda: T.clip_by_block_rms(1.0), lambda: T.clip_by_block_rms(2.0)),
    "clip_by_global_norm": (lambda: T.clip_by_global_norm(1.0), lambda: T.clip_by_global_norm(2.0)),
    "ema": (lambda: T.ema(0.9), lambda: T.ema(0.9, debias=False)),
    "flatten": (lambda: T.flatten(T.rprop()), lambda: T.flatten(T.rmsprop())),
    "join_transforms": (
        lambda: T.join_transforms([T.rprop(), T.rmsprop(0.1)], [10]),
        lambda: T.join_transforms([T.rprop(), T.rmsprop(0.1)], [20]),
    ),
    "identity": (T.identity, T.set_to_zero),
    "leafwise": (lambda: T.leafwise(_rule), lambda: T.leafwise(_other_rule)),
    "masked": (
        lambda: T.masked(T.trace(0.9), {"w": True, "b": False}),
        lambda: T.masked(T.trace(0.9), {"w": False, "b": False}),
    ),
    "multi_transform": (
        lambda: T.multi_transform({"a": T.trace(0.9), "b": T.identity()}, {"w": "a", "b": "b"}),
        lambda: T.multi_transform({"a": T.trace(0.9), "b": T.identity()}, {"w": "b", "b": "b"}),
    ),
    "named_chain": (
        lambda: T.named_chain(("c", T.clip(1.0)), ("m", T.trace(0.9))),
        lambda: T.named_chain(("c", T.clip(1.0)), ("n", T.trace(0.9))),
    ),
    "partition": (
        lambda: T.partition({"a": T.rprop(), "b": T.rmsprop(1e-3)}, _all_a),
        lambda: T.partition({"a": T.rprop(), "b": T.rmsprop(1e-2)}, _all_a),
    ),
    "rmsprop": (lambda: T.rmsprop(1e-3, momentum=0.9), lambda: T.rmsprop(1e-3, momentum=0.8)),
    "rprop": (lambda: T.rprop(), lambda: T.rprop(variant="irprop+")),
    "scale": (lambda: T.scale(2.0), lambda: T.scale(3.0)),
    "scale_by_learning_rate": (
        lambda: T.scale_by_learning_rate(0.1),
        lambda: T.scale_by_learning_rate(0.1, flip_sign=False),
    ),
    "scale_by_rms": (lambda: T.scale_by_rms(0.9), lambda: T.scale_by_rms(0.99)),
    "scale_by_rprop": (lambda: T.scale_by_rprop(0.1), lambda: T.scale_by_rprop(0.2)),
    "scale_by_schedule": (
        lambda: T.scale_by_schedule(T.linear_schedule(1.0, 0.1, 9)),
        lambda: T.scale_by_schedule(T.linear_schedule(1.0, 0.1, 8)),
    ),
    "scale_by_stddev": (lambda: T.scale_by_stddev(), lambda: T.scale_by_stddev(eps=1e-6)),
    "set_to_zero": (T.set_to_zero, T.identity),
    "trace": (lambda: T.trace(0.9), lambda: T.trace(0.9, nesterov=True)),
    "zero_nans": (T.zero_nans, T.identity),
    "inject_hyperparams": (
        lambda: T.inject_hyperparams(T.rmsprop)(learning_rate=0.1),
        lambda: T.inject_hyperparams(T.rmsprop, static_args="momentum")(learning_rate=0.1),
    ),
    "MultiSteps": (lambda: T.MultiSteps(T.rprop(), 2), lambda: T.MultiSteps(T.rprop(), 3)),
    # schedules: compared by value too
    "constant_schedule": (lambda: T.constant_schedule(0.1), lambda: T.constant_schedule(0.2)),
    "cosine_decay_schedule": (
        lambda: T.cosine_decay_schedule(1.0, 10),
        lambda: T.cosine_decay_schedule(1.0, 11),
    ),
    "cosine_onecycle_schedule": (
        lambda: T.cosine_onecycle_schedule(10, 1.0),
        lambda: T.cosine_onecycle_schedule(10, 2.0),
    ),
    "exponential_decay": (
        lambda: T.exponential_decay(1.0, 5, 0.5),
        lambda: T.exponential_decay(1.0, 5, 0.6),
    ),
    "join_schedules": (
        lambda: T.join_schedules([T.constant_schedule(1.0), T.constant_schedule(0.5)], [3]),
        lambda: T.join_schedules([T.constant_schedule(1.0), T.constant_schedule(0.5)], [4]),
    ),
    "linear_onecycle_schedule": (
        lambda: T.linear_onecycle_schedule(10, 1.0),
        lambda: T.linear_onecycle_schedule(12, 1.0),
    ),
    "linear_schedule": (
        lambda: T.linear_schedule(1.0, 0.0, 10),
        lambda: T.linear_schedule(1.0, 0.0, 9),
    ),
    "piecewise_constant_schedule": (
        lambda: T.piecewise_constant_schedule(1.0, {5: 0.5}),
        lambda: T.piecewise_constant_schedule(1.0, {5: 0.1}),
    ),
    "piecewise_interpolate_schedule": (
        lambda: T.piecewise_interpolate_schedule("linear", 1.0, {5: 0.5}),
        lambda: T.piecewise_interpolate_schedule("cosine", 1.0, {5: 0.5}),
    ),
    "polynomial_schedule": (
        lambda: T.polynomial_schedule(1.0, 0.0, 2, 10),
        lambda: T.polynomial_schedule(1.0, 0.0, 3, 10),
    ),
    "sgdr_schedule": (
        lambda: T.sgdr_schedule(
            [{"init_value": 1.0, "peak_value": 2.0, "warmup_steps": 2, "decay_steps": 5}]
        ),
        lambda: T.sgdr_schedule(
            [{"init_value": 1.0, "peak_value": 3.0, "warmup_steps": 2, "decay_steps": 5}]
        ),
    ),
    "warmup_constant_schedule": (
        lambda: T.warmup_constant_schedule(0.0, 1.0, 5),
        lambda: T.warmup_constant_schedule(0.0, 1.0, 6),
    ),
    "warmup_cosine_decay_schedule": (
        lambda: T.warmup_cosine_decay_schedule(0.0, 1.0, 2, 10),
        lambda: T.warmup_cosine_decay_schedule(0.0, 1.0, 3, 10),
    ),
    "warmup_exponential_decay_schedule": (
        lambda: T.warmup_exponential_decay_schedule(0.0, 1.0, 2, 5, 0.5),
        lambda: T.warmup_exponential_decay_schedule(0.0, 1.0, 2, 5, 0.4),
    ),
}

# public functions that build no transform (and so need no key)
NOT_CONSTRUCTORS = {
    "apply_updates",
    "constructor",
    "global_norm",
    "restore_checkpoint",
    "rprop_prev_signs",
    "rprop_step_sizes",
    "save_checkpoint",
    "set_hyperparams",
    "skip_not_finite",
}


def test_every_public_constructor_has_a_sample_and_a_key():
    """A new public function is either a constructor (it then needs a sample here and a
    line in gradtx/_values.py) or listed as building no transform."""
    public = {n for n in gradtx.__all__ if inspect.isfunction(getattr(gradtx, n))}
    public |= set(_values.CLASSES)
    unclassified = public - set(SAMPLES) - NOT_CONSTRUCTORS
    assert not unclassified, f"add these to SAMPLES or NOT_CONSTRUCTORS: {sorted(unclassified)}"
    keyed = set(_values.TRANSFORMS + _values.SCHEDULES + _values.FACTORIES + _values.CLASSES)
    assert set(SAMPLES) <= keyed, sorted(set(SAMPLES) - keyed)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_equal_when_built_alike_unequal_otherwise(name):
    build, other = SAMPLES[name]
    a, b, c = build(), build(), other()
    assert a is not b
    assert a == b and hash(a) == hash(b) and not (a != b)
    assert a != c and not (a == c)
    assert jax.tree.leaves(a) == []  # a pytree with nothing to trace
    if hasattr(a, "update"):
        assert a.update == b.update and a.init == b.init and a.init != a.update


def test_nested_equality_follows_the_members():
    block = lambda d: gradtx.chain(gradtx.clip(1.0), gradtx.trace(d))  # noqa: E731
    assert gradtx.chain(block(0.9), gradtx.rprop()) == gradtx.chain(block(0.9), gradtx.rprop())
    assert gradtx.chain(block(0.9), gradtx.rprop()) != gradtx.chain(block(0.8), gradtx.rprop())
    # defaults are filled in; positional and keyword spellings agree
    assert gradtx.rmsprop(0.01) == gradtx.rmsprop(learning_rate=0.01, alpha=0.99)
    assert gradtx.multi_transform is not gradtx.partition  # two published names, one function
    labels = {"w": "a", "b": "a"}
    assert gradtx.multi_transform({"a": gradtx.rprop()}, labels) == gradtx.partition(
        {"a": gradtx.rprop()}, labels
    )


def test_what_equality_means_for_arguments():
    # numbers: type and value (1 and 1.0 build different transforms); nan equals nan
    assert gradtx.scale(1.0) != gradtx.scale(1)
    assert _values.normalise(float("nan")) == _values.normalise(float("nan"))
    assert gradtx.scale(-0.0) != gradtx.scale(0.0)  # compared by their bits
    # concrete arrays: by value (dtype, shape, weak type, bytes)
    x32 = jnp.array(2.0, jnp.float32)
    assert gradtx.scale(x32) == gradtx.scale(jnp.array(2.0, jnp.float32))
    assert gradtx.scale(x32) == gradtx.scale(np.float32(2.0))
    assert gradtx.scale(x32) != gradtx.scale(jnp.array(3.0, jnp.float32))
    assert gradtx.scale(x32) != gradtx.scale(jnp.array(2.0, jnp.bfloat16))
    assert gradtx.scale(x32) != gradtx.scale(2.0)
    # gradtx schedules: by value; other functions: by identity
    assert gradtx.rmsprop(gradtx.linear_schedule(0.1, 0.0, 5)) == gradtx.rmsprop(
        gradtx.linear_schedule(0.1, 0.0, 5)
    )
    fn = lambda count: 0.1  # noqa: E731
    assert gradtx.rmsprop(fn) == gradtx.rmsprop(fn)
    assert gradtx.rmsprop(fn) != gradtx.rmsprop(lambda count: 0.1)
    assert gradtx.rmsprop(optax.linear_schedule(0.1, 0.0, 5)) != gradtx.rmsprop(
        optax.linear_schedule(0.1, 0.0, 5)
    )
    # optax transforms inside gradtx combinators: by identity
    sgd = optax.sgd(0.1)
    assert gradtx.chain(sgd, gradtx.clip(1.0)) == gradtx.chain(sgd, gradtx.clip(1.0))
    assert gradtx.chain(sgd, gradtx.clip(1.0)) != gradtx.chain(optax.sgd(0.1), gradtx.clip(1.0))
    # a transform written by hand (no key): by its functions' identity, as a tuple
    hand = gradtx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    assert gradtx.chain(hand) == gradtx.chain(hand)


def test_traced_hyperparameters_compare_by_identity():
    seen = []

    @jax.jit
    def f(lr):
        a, b, c = gradtx.rmsprop(lr), gradtx.rmsprop(lr), gradtx.rmsprop(lr + 0.0)
        seen.append((a == b, hash(a) == hash(b), a == c))
        return lr

    f(0.1)
    assert seen == [(True, True, False)]  # the same tracer: equal; another: not


def test_repr_says_how_it_was_built():
    assert repr(gradtx.rprop(0.1)) == "GradientTransformation<gradtx.rprop(0.1)>"
    assert "inject_hyperparams(gradtx.rmsprop)" in repr(
        gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    )


def test_copies_are_the_same_transform():
    import copy

    tx = gradtx.chain(gradtx.clip(1.0), gradtx.rprop())
    assert copy.deepcopy(tx) == tx and copy.copy(tx) == tx
    ms = gradtx.MultiSteps(gradtx.rprop(), 2)
    assert copy.deepcopy(ms) == ms


# ---------------------------------------------------------------------------------------
# A transform as an argument of jitted functions (issue 26): a rebuilt-alike transform does
# not retrace, as a static argument, as a plain argument and under equinox's ``filter_jit``;
# the numbers are those of the same transform closed over, bit for bit; a new learning rate
# is a new transform (it compiles again) unless it is injected. And the protocol with and
# without optax imported.
#
# ``python tests/test_values.py`` prints the table of issue 26's "must show".
# ---------------------------------------------------------------------------------------


SGD = optax.sgd(0.1)  # one optax object, reused: members compare by identity


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
