"""``partition``'s labels (and ``masked``'s masks): one notion of label equality.

A label names the key of ``transforms`` that ``transforms[label]`` finds (dict lookup:
hash and ``==``); the check and the grouping use that one lookup, so a leaf gets its
label's transform, or the label is refused naming its path (optax's rule). The reference
applies each leaf's transform by hand: ``transforms[label]`` on that leaf alone.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 7


# Keys of `transforms`: the label types people use.
KEYS = st.one_of(
    st.text(max_size=3),
    st.integers(-3, 9),
    st.booleans(),
    st.tuples(st.sampled_from("ab"), st.integers(0, 2)),
    st.sampled_from(list(Color) + list(Level)),
)


def _aliases(key):
    """Labels equal to ``key`` under dict lookup, of other types (as users spell them)."""
    out = [key]
    if isinstance(key, int | np.integer) and not isinstance(key, enum.Enum):
        out += [np.int64(key), np.int32(key), float(key)]
    if isinstance(key, str):
        out.append(np.str_(key))
    return out


def _not_keys(keys):
    """Labels that name none of ``keys``: a key's string spelling, a near miss."""
    candidates = [str(k) for k in keys] + ["missing", 10**6, ("z", 9)]
    return [c for c in candidates if c not in keys]


@st.composite
def labelled_trees(draw):
    """(keys, params, labels, expected): a tree of dicts and lists, each leaf (or a whole
    subtree) labelled; ``expected`` maps each leaf path to its key, or None for a label
    with no transform."""
    keys = list(dict.fromkeys(draw(st.lists(KEYS, min_size=1, max_size=4))))
    n = 0

    def leaf():
        nonlocal n
        n += 1
        return jnp.full((n % 3 + 1,), float(n), jnp.float32)

    def label(missing_ok):
        k = draw(st.sampled_from(keys))
        pool = _aliases(k)
        if missing_ok and draw(st.integers(0, 9)) == 0:
            pool = _not_keys(keys) or pool
        return draw(st.sampled_from(pool))

    def build(depth):
        kind = draw(st.sampled_from(["leaf", "dict", "list", "prefix"] if depth < 2 else ["leaf"]))
        if kind == "leaf":
            return leaf(), label(True)
        if kind == "prefix":  # one label for a whole subtree
            sub, _ = build(depth + 1)
            return sub, label(True)
        size = draw(st.integers(1, 3))
        pairs = [build(depth + 1) for _ in range(size)]
        if kind == "dict":
            return {f"k{i}": p for i, (p, _) in enumerate(pairs)}, {
                f"k{i}": lab for i, (_, lab) in enumerate(pairs)
            }
        return [p for p, _ in pairs], [lab for _, lab in pairs]

    params, labels = build(0)
    return keys, params, labels


def _reference(keys, params, labels):
    """Each leaf's update by hand: its label's factor (``transforms[label]`` is
    ``scale(factor)``) times the gradient; raises KeyError for a label with no transform."""
    factors = {k: float(i + 2) for i, k in enumerate(keys)}
    is_label = lambda x: not isinstance(x, list | dict)  # noqa: E731 - the labels' leaves
    return jax.tree.map(
        lambda lab, sub: jax.tree.map(lambda g: factors[lab] * g, sub),
        labels,
        params,
        is_leaf=is_label,
    ), factors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_trees())
def test_each_leaf_gets_its_labels_transform_or_the_label_is_refused(case):
    keys, params, labels = case
    try:
        expected, factors = _reference(keys, params, labels)
    except KeyError:
        expected, factors = None, {k: float(i + 2) for i, k in enumerate(keys)}
    tx = gradtx.partition({k: gradtx.scale(f) for k, f in factors.items()}, labels)
    if expected is None:
        with pytest.raises(ValueError, match=r"Invalid param_labels: the label at path .* has no"):
            tx.init(params)
        with pytest.raises(ValueError, match=r"has no transform"):
            tx.update(params, gradtx.PartitionState({k: None for k in keys}), params)
        return
    updates, _ = tx.update(params, tx.init(params), params)
    assert jax.tree.structure(updates) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(got, want)


def test_the_issue_example_string_labels_for_int_keys_are_refused():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    tx = gradtx.partition({0: gradtx.rmsprop(0.1), 1: gradtx.set_to_zero()}, {"w": "0", "b": "1"})
    with pytest.raises(ValueError, match=r"path \['b'\] is '1' \(str\), which has no transform"):
        tx.init(params)
    multi = gradtx.multi_transform(
        {0: gradtx.rmsprop(0.1), 1: gradtx.set_to_zero()}, {"w": "0", "b": "1"}
    )
    with pytest.raises(ValueError, match="has no transform"):
        multi.init(params)


def test_int_labels_against_the_transforms_applied_by_hand():
    """The issue's transforms with the right labels: rmsprop on w, exactly as rmsprop on w
    alone; b frozen."""
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    grads = {"w": jnp.array([0.5, -0.25]), "b": jnp.array([4.0])}
    tx = gradtx.partition(
        {0: gradtx.rmsprop(0.1), 1: gradtx.set_to_zero()}, {"w": np.int64(0), "b": 1}
    )
    state = tx.init(params)
    alone = gradtx.rmsprop(0.1)
    alone_state = alone.init({"w": params["w"]})
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        want, alone_state = alone.update({"w": grads["w"]}, alone_state, {"w": params["w"]})
        np.testing.assert_array_equal(updates["w"], want["w"])
        np.testing.assert_array_equal(updates["b"], jnp.zeros(1))


def test_unhashable_labels_are_refused_by_path():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.partition({0: gradtx.scale(1.0)}, {"w": jnp.array(0), "b": 0})
    with pytest.raises(TypeError, match=r"path \['w'\].*cannot be a dict key"):
        tx.init(params)


def test_labels_from_a_function_of_the_params():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.partition(
        {Color.RED: gradtx.scale(2.0), Color.BLUE: gradtx.scale(3.0)},
        lambda p: {k: Color.RED if k == "w" else Color.BLUE for k in p},
    )
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], 2.0 * params["w"])
    np.testing.assert_array_equal(updates["b"], 3.0 * params["b"])


@pytest.mark.parametrize("entry", ["False", "yes", 0, 1, 0.0, jnp.array([True, False])], ids=repr)
def test_masks_hold_bools_only(entry):
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.masked(gradtx.scale(2.0), {"w": entry, "b": True})
    with pytest.raises(TypeError, match=r"Invalid mask: the entry at path \['w'\]"):
        tx.init(params)


@pytest.mark.parametrize("flag", [True, False, np.bool_(True), np.array(False), jnp.array(True)])
def test_masks_of_bools_of_every_kind(flag):
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gradtx.masked(gradtx.scale(2.0), {"w": flag, "b": False})
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], (2.0 if bool(flag) else 1.0) * params["w"])
    np.testing.assert_array_equal(updates["b"], params["b"])
