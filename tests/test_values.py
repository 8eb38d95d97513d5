"""Transforms as values (issue 26): every public transform compares and hashes equal to one
built alike and unequal to one built otherwise; a transform is a valid argument of a jitted
function; a rebuilt-alike transform does not retrace (static argument, plain argument,
equinox's ``filter_jit``); and passing it gives the numbers of the same transform closed
over, bit for bit."""

from __future__ import annotations

import inspect

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
