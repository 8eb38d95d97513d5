"""Param groups (gradtx/_combine.py's partition, with masked beside it): against
torch.optim's param groups run live (a weight decay, a learning rate per group), against
optax.masked / optax.partition wrapping the same inner transforms, under jit and vmap;
partition's labels against the transforms applied by hand. masked's masks on their own:
test_masking.py; the decoupled weight decay's published rule: test_weight_decay.py."""

from __future__ import annotations

import enum

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx
from tests import _tolerance as h
from tests._runners import run_torch
from tests.linear_fit import grad_fn, params0, run


def groups(opt_cls, groups, **defaults):
    """``make_opt`` for ``run_torch``: ``groups`` is a list of (names, options), as torch
    param groups."""
    return lambda t: opt_cls([{"params": [t[n] for n in ns], **o} for ns, o in groups], **defaults)


def labels(p):
    return {k: "no_decay" if k == "b" else "decay" for k in p}


def test_weight_decay_on_weights_not_biases_matches_torch():
    groups_ = [(["w"], {"weight_decay": 0.1}), (["b"], {"weight_decay": 0.0})]
    make_opt = groups(torch.optim.RMSprop, groups_, lr=0.01, momentum=0.9)
    torch_run = run_torch(make_opt, params0(), grad_fn, 20)
    by_partition = gradtx.partition(
        {
            "decay": gradtx.rmsprop(0.01, momentum=0.9, weight_decay=0.1),
            "no_decay": gradtx.rmsprop(0.01, momentum=0.9),
        },
        labels,
    )
    by_mask = gradtx.chain(
        gradtx.add_decayed_weights(0.1, mask=lambda p: {k: k != "b" for k in p}),
        gradtx.scale_by_rms(0.99, 1e-8, eps_in_sqrt=False),
        gradtx.trace(0.9),
        gradtx.scale_by_learning_rate(0.01),
    )
    nudged = [run_torch(make_opt, params0(), grad_fn, 20, nudge=n) for n in h.NUDGES]
    for config, tx in (("weight decay by partition", by_partition), ("by mask", by_mask)):
        ours, _ = run(tx, 20)
        h.check_trajectories("torch.optim.RMSprop (groups)", config, ours, torch_run, nudged, 20)


def test_a_learning_rate_per_group_matches_torch():
    groups_ = [(["w"], {"lr": 0.05}), (["b"], {"lr": 0.002})]
    make_opt = groups(torch.optim.RMSprop, groups_, centered=True)
    torch_run = run_torch(make_opt, params0(), grad_fn, 20)
    nudged = [run_torch(make_opt, params0(), grad_fn, 20, nudge=n) for n in h.NUDGES]
    tx = gradtx.partition(
        {
            "decay": gradtx.rmsprop(0.05, centered=True),
            "no_decay": gradtx.rmsprop(0.002, centered=True),
        },
        {"w": "decay", "b": "no_decay"},  # labels as a pytree
    )
    ours, _ = run(tx, 20)
    h.check_trajectories(
        "torch.optim.RMSprop (groups)", "lr per group", ours, torch_run, nudged, 20
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_group_with_lr_1e_28_is_untouched(dtype):
    """RMSprop: lr * update is far below one ulp of the params. Rprop: lr only seeds the
    step sizes, which the default minimum (1e-6) lifts at once, so the group moves unless
    step_sizes=(0, max), as in torch."""
    p0 = params0(dtype)
    cases = [
        (gradtx.rmsprop, torch.optim.RMSprop, {}),
        (gradtx.rprop, torch.optim.Rprop, {"step_sizes": (0.0, 50.0)}),
    ]
    for make, torch_cls, extra in cases:
        tx = gradtx.partition(
            {"frozen": make(1e-28, **extra), "moving": make(1e-2)}, {"w": "moving", "b": "frozen"}
        )
        ours, _ = run(tx, 15, dtype)
        make_opt = groups(torch_cls, [(["b"], {"lr": 1e-28, **extra}), (["w"], {"lr": 1e-2})])
        theirs = run_torch(make_opt, p0, grad_fn, 15)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a["b"], p0["b"])
            np.testing.assert_array_equal(b["b"], p0["b"])
        assert not np.array_equal(ours[-1]["w"], p0["w"])
        nudged = [run_torch(make_opt, p0, grad_fn, 15, nudge=n) for n in h.NUDGES]
        h.check_trajectories(
            f"torch.optim.{torch_cls.__name__} (groups)", "lr 1e-28", ours, theirs, nudged, 15
        )
    # with Rprop's default minimum step the "frozen" group does move, in torch and here
    tx = gradtx.partition({"f": gradtx.rprop(1e-28), "m": gradtx.rprop(1e-2)}, {"w": "m", "b": "f"})
    ours, _ = run(tx, 3, dtype)
    make_opt = groups(torch.optim.Rprop, [(["b"], {"lr": 1e-28}), (["w"], {"lr": 1e-2})])
    theirs = run_torch(make_opt, p0, grad_fn, 3)
    assert np.all(ours[-1]["b"] != p0["b"])
    assert h.scaled_error(ours, theirs) == 0.0


def test_masked_and_partition_give_optax_numbers_and_keep_no_state_for_others():
    inner = gradtx.rmsprop(0.02, momentum=0.5)
    mask = {"w": True, "b": False}
    pairs = [
        (gradtx.masked(inner, mask), optax.masked(inner, mask)),
        (
            gradtx.partition({"decay": inner, "no_decay": gradtx.rprop()}, labels),
            optax.partition({"decay": inner, "no_decay": gradtx.rprop()}, labels),
        ),
    ]
    for ours, theirs in pairs:
        a, sa = run(ours, 10)
        b, sb = run(theirs, 10)
        assert h.scaled_error(a, b) == 0.0
        # the same state arrays (optax uses its own MaskedNode class for the holes)
        for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
            np.testing.assert_array_equal(x, y)
    _, state = run(gradtx.masked(inner, mask), 1)
    nu = state.inner_state[0].nu
    assert isinstance(nu["b"], gradtx.MaskedNode) and nu["w"].shape == (3, 2)
    # masked-out leaves pass through unchanged
    g = jax.tree.map(jnp.asarray, grad_fn(params0()))
    tx = gradtx.masked(gradtx.scale(-3.0), lambda p: {"w": False, "b": True})
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["w"], g["w"])
    np.testing.assert_array_equal(u["b"], -3.0 * g["b"])


def test_bad_labels_and_masks_are_named():
    p = jax.tree.map(jnp.asarray, params0())
    with pytest.raises(ValueError, match="no_decay"):
        gradtx.partition({"decay": gradtx.scale(1.0)}, labels).init(p)
    with pytest.raises(ValueError, match="mask"):
        gradtx.masked(gradtx.scale(1.0), {"w": True}).init(p)
    with pytest.raises(TypeError, match="decay"):
        gradtx.partition({"decay": 3}, labels)


def test_under_jit_vmap_and_with_none_leaves():
    tx = gradtx.partition({"a": gradtx.rmsprop(0.1), "b": gradtx.rprop()}, {"w": "a", "b": "b"})
    p = jax.tree.map(jnp.asarray, params0())
    g = jax.tree.map(jnp.asarray, grad_fn(params0()))
    eager, _ = tx.update(g, tx.init(p), p)
    jitted, _ = jax.jit(tx.update)(g, tx.init(p), p)
    chex.assert_trees_all_close(eager, jitted, rtol=1e-15, atol=0)
    # vmap inside one compiled program (op by op, vmap compiles a program per operation);
    # the batch stacked in NumPy
    batched = jax.jit(jax.vmap(lambda g: tx.update(g, tx.init(p), p)[0]))(
        jax.tree.map(lambda x: np.stack([x, 2 * x]), grad_fn(params0()))
    )
    np.testing.assert_allclose(batched["w"][0], eager["w"], rtol=1e-15)
    tree = {"w": p["w"], "b": None}
    m = gradtx.masked(gradtx.rmsprop(0.1), {"w": True, "b": False})
    u, _ = m.update({"w": g["w"], "b": None}, m.init(tree), tree)
    assert u["b"] is None


# ---------------------------------------------------------------------------------------
# ``partition``'s labels: one notion of label equality (``masked``'s masks: test_masking.py).
#
# A label names the key of ``transforms`` that ``transforms[label]`` finds (dict lookup:
# hash and ``==``); the check and the grouping use that one lookup, so a leaf gets its
# label's transform, or the label is refused naming its path (optax's rule). The reference
# applies each leaf's transform by hand: ``transforms[label]`` on that leaf alone.
# ---------------------------------------------------------------------------------------


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
        # made in NumPy and handed over: no program per leaf shape for the test's data
        return jax.device_put(np.full((n % 3 + 1,), float(n), np.float32))

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
    """Each leaf's update by hand, in NumPy: its label's factor (``transforms[label]`` is
    ``scale(factor)``) times the gradient; raises KeyError for a label with no transform."""
    factors = {k: float(i + 2) for i, k in enumerate(keys)}
    is_label = lambda x: not isinstance(x, list | dict)  # noqa: E731 - the labels' leaves
    return jax.tree.map(
        lambda lab, sub: jax.tree.map(lambda g: factors[lab] * np.asarray(g), sub),
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
