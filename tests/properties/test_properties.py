"""Property-based tests (hypothesis): random pytrees, shapes and hyperparameters.

The aliases are element-wise, so running them on any pytree must equal running the NumPy
reference (tests/reference.py) on the concatenation of its leaves; structure, shapes and
dtypes must come back unchanged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradtx
from tests import reference
from tests._tolerance import nudge, scaled_error, tolerance

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple)
leaves = shapes.map(lambda s: ("leaf", s))
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=0, max_size=3),
        st.dictionaries(st.sampled_from("abcde"), children, min_size=0, max_size=3),
        st.tuples(children, children),
    ),
    max_leaves=6,
)
TREE_AND_SEED = {"spec": trees, "seed": st.integers(0, 2**16)}
"""Every property draws a params tree shape and the seed of its values and gradients."""


def build(spec, rng, dtype):
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "leaf":
        return np.asarray(rng.normal(size=spec[1]), dtype)
    if isinstance(spec, list):
        return [build(s, rng, dtype) for s in spec]
    if isinstance(spec, dict):
        return {k: build(v, rng, dtype) for k, v in spec.items()}
    return tuple(build(s, rng, dtype) for s in spec)


def ravel(tree):
    """The leaves of ``tree`` in NumPy, raveled and concatenated (as ravel_pytree, without
    compiling a concatenation per tree signature)."""
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)] or [np.zeros(0)])


def unraveler(tree):
    """The inverse of :func:`ravel` for trees like ``tree``: NumPy leaves."""
    leaves, treedef = jax.tree.flatten(tree)
    shapes = [np.shape(x) for x in leaves]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    return lambda flat: treedef.unflatten(
        [c.reshape(s) for c, s in zip(np.split(np.asarray(flat), cuts), shapes)]
    )


@functools.partial(jax.jit, static_argnums=0)
def jit_init(tx, params):
    """``tx.init`` as one compiled program (eager, it compiles a program per operation
    and new leaf shape); the state's values are the same."""
    return tx.init(params)


def run_tree(tx, params, grad_fn, steps, init=None):
    """``init``: ``jit_init`` where an eager init compiles more programs than one per
    example (rprop's); the state's values are the same either way."""
    state = tx.init(params) if init is None else init(tx, params)
    out = []
    for t in range(steps):
        updates, state = tx.update(grad_fn(params, t), state, params)
        params = gradtx.apply_updates(params, updates)
        out.append(ravel(params))
    return params, out


def grad_leaf(x, t):
    """g = sin(3 theta + t) + 0.1 theta in NumPy, in theta's dtype: the tests' own data,
    made without compiling jax.numpy's operations per leaf shape."""
    x = np.asarray(x)
    return np.asarray(np.sin(3 * x + t) + 0.1 * x, x.dtype)


def grad_fn_for(seed):
    """A gradient with sign changes: g = sin(3 theta + t) + 0.1 theta (element-wise), as
    jax arrays, as jax.grad would give them."""
    del seed

    def grad(params, t):
        return jax.tree.map(lambda x: jnp.asarray(grad_leaf(x, t)), params)

    return grad


def reference_grad(params):
    """The gradient of :func:`grad_fn_for` on the raveled params, for the NumPy
    references: computed leaf by leaf, as the transform sees it."""
    unravel = unraveler(params)
    return lambda x, t: ravel(jax.tree.map(lambda leaf: grad_leaf(leaf, t), unravel(x)))


@SETTINGS
@given(
    **TREE_AND_SEED,
    lr=st.floats(1e-4, 0.5),
    eta_minus=st.floats(0.1, 0.9),
    eta_plus=st.floats(1.05, 2.0),
    lo=st.floats(0.0, 1e-3),
    hi=st.floats(0.01, 1.0),
    maximize=st.booleans(),
)
def test_rprop_on_any_tree_equals_reference(spec, seed, lr, eta_minus, eta_plus, lo, hi, maximize):
    params = build(spec, np.random.default_rng(seed), np.float64)
    grad = grad_fn_for(seed)
    tx = gradtx.rprop(lr, (eta_minus, eta_plus), (lo, hi), maximize=maximize)
    final, ours = run_tree(tx, params, grad, 8, init=jit_init)
    assert jax.tree.structure(final) == jax.tree.structure(params)
    theirs = reference.rprop(
        ravel(params),
        reference_grad(params),
        8,
        lr=lr,
        etas=(eta_minus, eta_plus),
        step_sizes=(lo, hi),
        maximize=maximize,
    )
    np.testing.assert_array_equal(
        np.stack(ours) if ours[0].size else 0, np.stack(theirs) if ours[0].size else 0
    )


@SETTINGS
@given(
    **TREE_AND_SEED,
    lr=st.floats(1e-4, 0.1),
    alpha=st.floats(0.5, 0.999),
    eps=st.sampled_from([1e-8, 1e-6, 1e-3]),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.1]),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    centered=st.booleans(),
    maximize=st.booleans(),
)
def test_rmsprop_on_any_tree_equals_reference(
    spec, seed, lr, alpha, eps, weight_decay, momentum, centered, maximize
):
    params = build(spec, np.random.default_rng(seed), np.float64)
    grad = grad_fn_for(seed)
    kw = dict(
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        maximize=maximize,
    )
    final, ours = run_tree(gradtx.rmsprop(lr, **kw), params, grad, 8)
    assert jax.tree.structure(final) == jax.tree.structure(params)
    flat = ravel(params)
    if flat.size == 0:
        return
    g = reference_grad(params)
    theirs = reference.rmsprop(flat, g, 8, lr=lr, **kw)
    # the bound from this case's conditioning (tests/_tolerance.py's policy, not recorded
    # in the parity report): the reference against itself with the params or every
    # gradient nudged one ulp; g = sin(3θ + t) + 0.1θ can amplify a rounding many-fold
    nudged = [
        reference.rmsprop(nudge(flat), g, 8, lr=lr, **kw),
        reference.rmsprop(flat, lambda x, t: nudge(g(x, t)), 8, lr=lr, **kw),
    ]
    tol = tolerance("float64", 8, max(scaled_error(n, theirs) for n in nudged))
    assert scaled_error(ours, theirs) <= tol.value, tol


@SETTINGS
@given(
    **TREE_AND_SEED,
    dtype=st.sampled_from([jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64, jnp.complex64]),
    which=st.sampled_from(["rprop", "rmsprop", "rmsprop_full"]),
)
def test_structure_shapes_and_dtypes_survive(spec, seed, dtype, which):
    # the params and gradients made in NumPy and handed over as jax arrays: no program
    # compiled per leaf shape and dtype for the test's own data
    params = jax.tree.map(
        lambda x: jnp.asarray(x.astype(dtype)), build(spec, np.random.default_rng(seed), np.float32)
    )
    tx = {
        "rprop": gradtx.rprop(),
        "rmsprop": gradtx.rmsprop(),
        "rmsprop_full": gradtx.rmsprop(weight_decay=0.1, momentum=0.9, centered=True),
    }[which]
    grads = jax.tree.map(
        lambda x: jnp.asarray(np.asarray(np.cos(np.asarray(x)) + 1, x.dtype)), params
    )
    updates, new = _init_update_apply(tx, grads, params)
    assert jax.tree.structure(new) == jax.tree.structure(params)
    for p, u, q in zip(jax.tree.leaves(params), jax.tree.leaves(updates), jax.tree.leaves(new)):
        assert p.shape == u.shape == q.shape
        assert p.dtype == u.dtype == q.dtype


@functools.partial(jax.jit, static_argnums=0)
def _init_update_apply(tx, grads, params):
    """init, one update and apply_updates: one compiled program per example."""
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates, gradtx.apply_updates(params, updates)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _both_layouts_step(deferred, eager, g, s_d, s_e, params, e):
    """One step of both layouts, with what the test reads of each (the updates, the
    step sizes, the signs) and the params moved by the deferred one's updates: one
    compiled program per example instead of a program per operation and leaf shape."""
    u_d, s_d = deferred.update(g, s_d, params, value=e)
    u_e, s_e = eager.update(g, s_e, params, value=e)
    reads = [
        (u, gradtx.rprop_step_sizes(s), gradtx.rprop_prev_signs(s))
        for u, s in ((u_d, s_d), (u_e, s_e))
    ]
    return reads, s_d, s_e, gradtx.apply_updates(params, u_d)


@SETTINGS
@given(
    **TREE_AND_SEED,
    variant=st.sampled_from(["rprop+", "irprop+"]),
    lr=st.floats(1e-4, 0.5),
    eta_minus=st.floats(0.1, 0.9),
    eta_plus=st.floats(1.05, 2.0),
    lo=st.floats(1e-8, 1e-2),
    hi=st.floats(0.01, 100.0),
)
def test_plus_variants_deferred_decrease_equals_the_eager_rule(
    spec, seed, variant, lr, eta_minus, eta_plus, lo, hi
):
    """The "+" variants' packed state defers each decrease by a step; the unpacked
    layout (bounds given as arrays) applies it at once, as the papers do: the updates,
    step sizes and signs must agree bit for bit on any tree and hyperparameters."""
    params = build(spec, np.random.default_rng(seed), np.float32)
    grad = grad_fn_for(seed)
    hyper = dict(learning_rate=lr, eta_minus=eta_minus, eta_plus=eta_plus, variant=variant)
    deferred = gradtx.scale_by_rprop(**hyper, min_step_size=lo, max_step_size=hi)
    eager = gradtx.scale_by_rprop(
        **hyper, min_step_size=jnp.float32(lo), max_step_size=jnp.float32(hi)
    )
    s_d, s_e = jit_init(deferred, params), jit_init(eager, params)
    assert type(s_d).__name__.endswith("PackedState")
    assert not type(s_e).__name__.endswith("PackedState")
    for t in range(8):
        # the loss rises and falls; its value handed over from NumPy
        g, e = grad(params, t), jax.device_put(np.float32((t * 7) % 3))
        (reads_d, reads_e), s_d, s_e, params = _both_layouts_step(
            deferred, eager, g, s_d, s_e, params, e
        )
        for read_d, read_e in zip(reads_d, reads_e):  # updates, step sizes, signs
            for a, b in zip(jax.tree.leaves(read_d), jax.tree.leaves(read_e)):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
