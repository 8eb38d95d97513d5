"""The protocol and the plumbing every transform shares (gradtx/_base.py, _leafwise.py,
_trees.py, _combine.py): pytrees, None leaves, the empty tree, dtypes, complex, purity,
jit/vmap, tree errors, and structural compatibility with optax."""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import gradtx

# Private helpers, tested here on purpose: the per-leaf engine and the saturating counter.
from gradtx._base import safe_increment
from gradtx._leafwise import leafwise


class Pair(NamedTuple):
    x: jax.Array
    y: jax.Array


def all_transforms():
    """Every public transform, built with non-trivial hyperparameters."""
    return {
        "rprop": gradtx.rprop(learning_rate=0.05),
        "rprop_max": gradtx.rprop(maximize=True),
        "rmsprop": gradtx.rmsprop(),
        "rmsprop_full": gradtx.rmsprop(weight_decay=0.1, momentum=0.9, centered=True),
        "scale_by_rms": gradtx.scale_by_rms(bias_correction=True, initial_scale=0.1),
        # initial_scale > 0: without it the bias-corrected variance is g^2 - g^2 on step 1
        "scale_by_stddev": gradtx.scale_by_stddev(initial_scale=0.1, bias_correction=True),
        "scale_by_stddev_outer_eps": gradtx.scale_by_stddev(eps_in_sqrt=False),
        "scale_by_rprop": gradtx.scale_by_rprop(0.1),
        "trace": gradtx.trace(0.9, nesterov=True),
        "add_decayed_weights": gradtx.add_decayed_weights(0.1),
        "add_decayed_weights_sched": gradtx.add_decayed_weights(lambda c: 0.1 / (1 + c)),
        "scale": gradtx.scale(0.5),
        "scale_by_learning_rate": gradtx.scale_by_learning_rate(0.1),
        "scale_by_schedule": gradtx.scale_by_schedule(lambda c: 0.1 * 0.9**c),
        "identity": gradtx.identity(),
    }


TRANSFORMS = all_transforms()


def _device(x, dtype):
    """A NumPy array handed over as a jax array of ``dtype``: the test's own data, made
    without compiling a conversion per dtype and shape (jnp.asarray(x, dtype) does)."""
    return jax.device_put(np.asarray(x, jnp.dtype(dtype)))


def nested_params(dtype=jnp.float32):
    return {
        "dense": [
            {"w": _device(np.arange(6).reshape(2, 3) / 7, dtype), "b": _device(np.ones(3), dtype)}
        ],
        "pair": Pair(_device(0.5, dtype), _device(np.zeros((0, 2)), dtype)),
        "frozen": None,
        "tup": (_device(np.linspace(-1, 1, 4), dtype),),
    }


def grads_like(params, seed=0):
    """Standard normal gradients (float32 draws in the params' dtypes), made in NumPy."""
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return treedef.unflatten(
        [_device(rng.standard_normal(x.shape).astype(np.float32), x.dtype) for x in leaves]
    )


def run(tx, params, steps=3, jit=True, update=None):
    update = update or (jax.jit(tx.update) if jit else tx.update)
    state = tx.init(params)
    for i in range(steps):
        updates, state = update(grads_like(params, i), state, params)
        params = gradtx.apply_updates(params, updates)
    return params, state


@functools.partial(jax.jit, static_argnums=0)
def _init_and_steps(tx, params, grads):
    """init, then one update and apply_updates per gradient in ``grads``: one compiled
    program per transform and tree signature (no per-operation programs of eager
    init/apply_updates). Returns the last updates, the new params and the state."""
    state = tx.init(params)
    updates = None
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = gradtx.apply_updates(params, updates)
    return updates, params, state


def test_protocol_is_optax_shaped():
    tx = gradtx.rprop()
    assert isinstance(tx, tuple) and tx._fields == ("init", "update")
    init, update = tx
    assert init is tx.init and update is tx.update


@pytest.mark.parametrize("name", TRANSFORMS)
def test_nested_pytree_with_none_scalar_and_zero_size(name):
    tx = TRANSFORMS[name]
    params = nested_params()
    _, new_params, _state = _init_and_steps(tx, params, [grads_like(params, i) for i in range(3)])
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    assert new_params["frozen"] is None
    for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(new_params)):
        assert p.shape == q.shape and p.dtype == q.dtype
        assert np.all(np.isfinite(np.asarray(q)))  # NumPy: no program per leaf shape


@pytest.mark.parametrize("name", TRANSFORMS)
def test_state_fields_mirror_params(name):
    params = nested_params()
    state = TRANSFORMS[name].init(params)  # eagerly: the nested tree's eager init, checked
    per_leaf = [
        field
        for s in (state if isinstance(state, tuple) and not hasattr(state, "_fields") else (state,))
        for name_, field in zip(s._fields, s)
        if name_ != "count"
    ]
    for field in per_leaf:
        assert jax.tree.structure(field) == jax.tree.structure(params)
        for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(field)):
            assert s.shape == p.shape


@pytest.mark.parametrize("name", TRANSFORMS)
def test_empty_tree(name):
    tx = TRANSFORMS[name]
    empties = ({}, [], ())
    states = [tx.init(empty) for empty in empties]
    # the three empty trees' updates in one compiled program (three tiny ones before)
    all_updates = _empty_updates(tx, states)
    for empty, updates in zip(empties, all_updates):
        assert jax.tree.structure(updates) == jax.tree.structure(empty)


@functools.partial(jax.jit, static_argnums=0)
def _empty_updates(tx, states):
    return [tx.update(e, s, e)[0] for e, s in zip(({}, [], ()), states)]


class TestJitAndEagerAgree(chex.TestCase):
    """Every public transform under ``chex.variants``: jitted and not, three steps equal
    the op-by-op run (XLA fuses multiply-adds inside one compiled computation, eager runs
    op by op: within a few float64 roundings)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*((name, name) for name in TRANSFORMS))
    def test_three_steps(self, name):
        tx = TRANSFORMS[name]
        params = nested_params(jnp.float64)
        eager, s1 = run(tx, params, jit=False)
        ours, s2 = run(tx, params, update=self.variant(tx.update))
        chex.assert_trees_all_close(eager, ours, rtol=1e-14, atol=1e-15)
        chex.assert_trees_all_close(s1, s2, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_vmap_over_independent_problems(name):
    """A batch of 4 independent problems under vmap equals 4 separate runs."""
    tx = TRANSFORMS[name]
    # float32 data made in NumPy; each problem's row sliced in NumPy (no program per row)
    batch = {"w": np.arange(12.0).reshape(4, 3) / 5 - 1, "b": np.linspace(-1, 1, 4)}
    grads = {"w": np.cos(np.arange(12.0)).reshape(4, 3), "b": np.sin(np.arange(4.0))}
    batch, grads = jax.tree.map(lambda x: x.astype(np.float32), (batch, grads))

    def two_steps(p, g):
        s = tx.init(p)
        u, s = tx.update(g, s, p)
        p = gradtx.apply_updates(p, u)
        u, s = tx.update(jax.tree.map(lambda x: -0.5 * x, g), s, p)
        return gradtx.apply_updates(p, u)

    batched = jax.tree.map(np.asarray, jax.jit(jax.vmap(two_steps))(batch, grads))
    for i in range(4):
        row = lambda tree, i=i: jax.tree.map(lambda x: jax.device_put(x[i]), tree)  # noqa: E731
        single = two_steps(row(batch), row(grads))
        chex.assert_trees_all_close(row(batched), single, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("kind", ["numpy", "jax"])
def test_update_does_not_mutate_inputs(name, kind):
    tx = TRANSFORMS[name]
    as_input = np.array if kind == "numpy" else jnp.array
    params = {"w": as_input(np.linspace(-1, 1, 6).reshape(2, 3)), "b": as_input(np.ones(3))}
    grads = {"w": as_input(np.full((2, 3), 0.3)), "b": as_input(np.full(3, -0.2))}
    state = tx.init(params)
    before = jax.tree.map(np.array, (params, grads, state))
    tx.update(grads, state, params)
    jax.jit(tx.update)(grads, state, params)
    after = jax.tree.map(np.array, (params, grads, state))
    chex.assert_trees_all_equal(before, after)


FLOATS = {
    "float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
    "float32": jnp.float32,
    "float64": jnp.float64,
}
COMPLEX = {"complex64": jnp.complex64, "complex128": jnp.complex128}


@pytest.mark.parametrize("name", TRANSFORMS)
def test_dtypes_are_kept(name):
    """Every float dtype, one subtree each, in one tree: one compiled update checks them
    all (each leaf's dtype is its own; a failure names the dtype and the leaf)."""
    params = {
        d: {"a": _device(np.linspace(-1, 1, 5), dtype), "b": _device(np.ones((2, 2)), dtype)}
        for d, dtype in FLOATS.items()
    }
    tx = TRANSFORMS[name]
    # init, update and apply_updates in one compiled program per transform
    updates, new, _ = _init_and_steps(tx, params, [grads_like(params)])
    for d, dtype in FLOATS.items():
        for leaf in ("a", "b"):
            u, p = updates[d][leaf], new[d][leaf]
            assert u.dtype == dtype and p.dtype == dtype, (d, leaf, u.dtype, p.dtype)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_complex_is_two_reals(name):
    """A complex leaf evolves exactly as the pair of real leaves (re, im) would: both
    complex dtypes, one subtree each, in one tree (one compiled update per tree)."""
    tx = TRANSFORMS[name]
    # the data made in NumPy (no program per dtype for the test's own arrays)
    z = np.linspace(-1, 1, 4) + 1j * np.linspace(2, -2, 4)
    gz = [np.cos(k + np.arange(4.0)) + 1j * np.sin(2 * k - np.arange(4.0)) for k in range(3)]

    def as_pairs(tree):  # each complex leaf as the dict of its real and imaginary parts
        return jax.tree.map(
            lambda x: {"re": jax.device_put(x.real), "im": jax.device_put(x.imag)}, tree
        )

    zc = {d: z.astype(dtype) for d, dtype in COMPLEX.items()}
    pc, pr = jax.device_put(zc), as_pairs(zc)
    state_c, state_r = tx.init(pc), tx.init(pr)
    for g in gz:
        gc = {d: g.astype(dtype) for d, dtype in COMPLEX.items()}
        uc, state_c = tx.update(jax.device_put(gc), state_c, pc)
        ur, state_r = tx.update(as_pairs(gc), state_r, pr)
        pc, pr = gradtx.apply_updates(pc, uc), gradtx.apply_updates(pr, ur)
        for d, dtype in COMPLEX.items():
            assert uc[d].dtype == dtype, (d, uc[d].dtype)
    for d in COMPLEX:
        np.testing.assert_array_equal(np.asarray(pc[d].real), np.asarray(pr[d]["re"]), err_msg=d)
        np.testing.assert_array_equal(np.asarray(pc[d].imag), np.asarray(pr[d]["im"]), err_msg=d)


def test_apply_updates_keeps_param_dtypes_and_none():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": None, "c": np.ones(3, np.float16)}
    updates = {"a": jnp.full(2, 0.5, jnp.float32), "b": None, "c": jnp.full(3, 0.25, jnp.float32)}
    new = gradtx.apply_updates(params, updates)
    assert new["a"].dtype == jnp.bfloat16 and new["c"].dtype == jnp.float16 and new["b"] is None
    np.testing.assert_array_equal(np.asarray(new["a"], np.float32), [1.5, 1.5])


# ---------------------------------------------------------------------------------------
# Tree mismatches name the path
# ---------------------------------------------------------------------------------------


def test_update_with_missing_leaf_names_the_path():
    tx = gradtx.rmsprop()
    params = {"enc": {"w": jnp.ones(3), "b": jnp.ones(2)}, "dec": [jnp.ones(2)]}
    state = tx.init(params)
    bad = {"enc": {"w": jnp.ones(3)}, "dec": [jnp.ones(2)]}
    with pytest.raises(ValueError, match=r"\['enc'\]\['b'\]"):
        tx.update(bad, state, params)


def test_update_with_extra_leaf_names_the_path():
    tx = gradtx.rprop()
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"\['extra'\]"):
        tx.update({"w": jnp.ones(3), "extra": jnp.ones(1)}, state, params)


def test_update_with_wrong_shape_names_the_path():
    tx = gradtx.scale_by_rms()
    params = {"layers": [jnp.ones((2, 3)), jnp.ones(4)]}
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"\['layers'\]\[1\].*\(5,\)"):
        tx.update({"layers": [jnp.ones((2, 3)), jnp.ones(5)]}, state)


def test_none_where_state_has_array_names_the_path():
    tx = gradtx.trace(0.9)
    state = tx.init({"a": jnp.ones(2), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"\['b'\]"):
        tx.update({"a": jnp.ones(2), "b": None}, state)


def test_apply_updates_mismatch_names_the_path():
    with pytest.raises(ValueError, match=r"\['x'\]"):
        gradtx.apply_updates({"x": jnp.ones(1), "y": jnp.ones(1)}, {"y": jnp.ones(1)})


# ---------------------------------------------------------------------------------------
# chain: extra arguments, and optax in both directions
# ---------------------------------------------------------------------------------------


def _recording_transform(log):
    def init(params):
        return gradtx.EmptyState()

    def update(updates, state, params=None, **extra_args):
        log.append(extra_args)
        return updates, state

    return gradtx.GradientTransformation(init, update)


def test_chain_forwards_extra_args_to_every_member_that_takes_them():
    log = []
    plain = optax.scale(2.0)  # update(updates, state, params): must not receive value=
    tx = gradtx.chain(_recording_transform(log), plain, _recording_transform(log))
    params = {"a": jnp.ones(2)}
    updates, _ = tx.update(params, tx.init(params), params, value=3.0, note="x")
    assert log == [{"value": 3.0, "note": "x"}] * 2
    np.testing.assert_array_equal(updates["a"], [2.0, 2.0])


def test_optax_transform_inside_gradtx_chain_and_back():
    params = {"w": jnp.linspace(-1, 1, 5), "b": jnp.ones(2)}
    grads = grads_like(params)
    mixed_a = gradtx.chain(optax.clip_by_global_norm(0.5), gradtx.scale_by_rms(), optax.scale(-0.1))
    mixed_b = optax.chain(optax.clip_by_global_norm(0.5), gradtx.scale_by_rms(), gradtx.scale(-0.1))
    pure = optax.chain(optax.clip_by_global_norm(0.5), optax.scale_by_rms(), optax.scale(-0.1))
    results = []
    for tx in (mixed_a, mixed_b, pure):
        state = tx.init(params)
        for _ in range(3):
            u, state = jax.jit(tx.update)(grads, state, params)
        results.append(u)
    for r in results[:2]:
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), r, results[2])


def test_gradtx_alias_inside_optax_chain_and_optax_apply_updates():
    params = {"w": jnp.linspace(-1, 1, 5)}
    tx = optax.chain(gradtx.rmsprop(momentum=0.9), optax.identity())
    state = tx.init(params)
    u, state = jax.jit(tx.update)(grads_like(params), state, params)
    new = optax.apply_updates(params, u)
    ref_tx = gradtx.rmsprop(momentum=0.9)
    ref_u, _ = ref_tx.update(grads_like(params), ref_tx.init(params), params)
    np.testing.assert_allclose(new["w"], gradtx.apply_updates(params, ref_u)["w"], rtol=1e-6)


def test_chain_rejects_non_transforms_and_wrong_state():
    with pytest.raises(TypeError, match="argument 1"):
        gradtx.chain(gradtx.scale(1.0), 3.0)
    tx = gradtx.chain(gradtx.scale(1.0), gradtx.scale(2.0))
    with pytest.raises(ValueError, match="2 transforms"):
        tx.update({}, (gradtx.EmptyState(),))


def test_missing_extra_arg_is_a_clear_error_when_traced():
    needs_value = leafwise(lambda g, *, value: (g * value, ()), extra_args=("value",))
    tx = gradtx.chain(gradtx.scale(1.0), needs_value)
    params = {"a": jnp.ones(2)}
    with pytest.raises(TypeError, match="value"):
        jax.jit(tx.update)(params, tx.init(params), params)
    u, _ = jax.jit(tx.update)(params, tx.init(params), params, value=2.0)
    np.testing.assert_array_equal(u["a"], [2.0, 2.0])


def test_count_saturates_instead_of_wrapping():
    top = jnp.iinfo(jnp.int32).max
    assert int(safe_increment(jnp.asarray(top - 1, jnp.int32))) == top
    assert int(safe_increment(jnp.asarray(top, jnp.int32))) == top


def _functions_and_their_calls(stablehlo: str) -> dict[str, list[str]]:
    """Each function of a lowered module and the functions its body calls."""
    calls: dict[str, list[str]] = {}
    name = None
    for line in stablehlo.splitlines():
        m = re.match(r"\s*func\.func (?:public |private )?@(\S+?)\(", line)
        if m:
            name = m.group(1)
            calls[name] = []
        elif name is not None:
            calls[name] += re.findall(r"call @(\S+?)\(", line)
    return calls


@pytest.mark.parametrize(
    "name, tx",
    [(f"rprop[{v}]", gradtx.rprop(variant=v)) for v in gradtx.RPROP_VARIANTS]
    + [(n, TRANSFORMS[n]) for n in ("rmsprop_full", "add_decayed_weights", "scale_by_stddev")],
)
def test_a_step_calls_each_leaf_rule_once_and_nothing_below_it(name, tx):
    """The engine runs each leaf's rule through one nested jit (traced once per leaf
    signature) and inlines the jitted functions the rule calls (jnp.where, jnp.clip,
    ...): XLA would clone and inline every nested call per leaf, a visible share of a
    many-leaf step's compile time. So the lowered step's leaf rules call nothing."""
    params = {"a": jnp.ones((2, 3)), "b": jnp.ones((2, 3)), "c": jnp.ones(4)}
    kw = {"value": jnp.float32(1.0)} if "irprop+" in name else {}
    text = jax.jit(lambda g, s: tx.update(g, s, params, **kw)).lower(params, tx.init(params))
    calls = _functions_and_their_calls(text.as_text())
    rules = [f for f in calls if f != "main"]
    assert rules, "expected the leaf rules as functions of their own"
    assert {f: calls[f] for f in rules} == {f: [] for f in rules}
    # one function per rule and leaf signature, shared: "b" calls "a"'s
    assert len(rules) < len(calls["main"])


def test_inlining_a_rules_calls_keeps_its_numbers():
    """The same primitives on the same values: a rule built from jitted jax.numpy
    functions gives, inlined, the numbers of the same rule jitted as written."""

    def rule(g):
        return (jnp.clip(jnp.where(g > 0, g * 1.1, g / 3), -0.5, 0.7) + jnp.remainder(g, 0.3), ())

    g = {"a": jnp.linspace(-2.0, 2.0, 11), "b": jnp.linspace(-1.0, 1.5, 7, dtype=jnp.bfloat16)}
    tx = leafwise(rule)
    ours, _ = tx.update(g, tx.init(g))
    expected = jax.tree.map(lambda x: jax.jit(rule)(x)[0], g)
    chex.assert_trees_all_equal(ours, expected)
