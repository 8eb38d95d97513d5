"""Sharding cases, run on 8 simulated CPU devices by ``tests/test_sharding.py``.

Not collected by the main test run (the file name does not start with ``test_``): it
needs ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before jax starts,
which would give every other test 8 devices too. ``test_sharding.py`` runs it in a
subprocess with that flag.

What is checked, for every transform and alias:

* ``init`` called eagerly and ``jax.jit(init)`` both give each per-parameter state leaf
  its param's sharding, for replicated and FSDP-sharded (first axis over the devices)
  params; a naive jitted init (``jnp.zeros_like`` per leaf, what optax does) does not,
  so the check can fail;
* a jitted ``update`` + ``apply_updates`` keeps the shardings of params and state, and
  its numbers equal those of the same steps on one device;
* data-parallel training (batch split over the devices, gradients averaged across
  them), by sharding propagation and by ``shard_map`` with ``pmean``, equals
  full-batch training on one device, and the params stay replicated.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import gradtx

N_DEVICES = 8

if jax.device_count() < N_DEVICES:  # run directly without the flag: nothing to test
    pytest.skip(
        f"needs {N_DEVICES} devices: run through tests/test_sharding.py", allow_module_level=True
    )


def _variants():
    import inspect

    if "variant" in inspect.signature(gradtx.rprop).parameters:
        return ("irprop-", "rprop-", "rprop+", "irprop+")
    return ("irprop-",)


# Every transform and alias: (id, constructor, needs value=loss).
TRANSFORMS = [
    *[
        (f"rprop[{v}]", functools.partial(gradtx.rprop, 1e-2, variant=v), v == "irprop+")
        for v in _variants()
        if len(_variants()) > 1
    ],
    *([("rprop", lambda: gradtx.rprop(1e-2), False)] if len(_variants()) == 1 else []),
    ("rprop[maximize]", lambda: gradtx.rprop(1e-2, maximize=True), False),
    ("rmsprop", lambda: gradtx.rmsprop(1e-2), False),
    (
        "rmsprop[wd,momentum,centered]",
        lambda: gradtx.rmsprop(1e-2, weight_decay=1e-2, momentum=0.9, centered=True),
        False,
    ),
    ("rmsprop[schedule]", lambda: gradtx.rmsprop(lambda c: 1e-2 / (1.0 + c)), False),
    ("scale_by_rms", lambda: gradtx.scale_by_rms(), False),
    ("scale_by_rms[bias_correction]", lambda: gradtx.scale_by_rms(bias_correction=True), False),
    ("scale_by_stddev", lambda: gradtx.scale_by_stddev(), False),
    ("scale_by_rprop", lambda: gradtx.scale_by_rprop(1e-2), False),
    ("trace[nesterov]", lambda: gradtx.trace(0.9, nesterov=True), False),
    ("add_decayed_weights", lambda: gradtx.add_decayed_weights(1e-2), False),
    ("scale", lambda: gradtx.scale(0.5), False),
    ("scale_by_learning_rate", lambda: gradtx.scale_by_learning_rate(1e-2), False),
    ("scale_by_schedule", lambda: gradtx.scale_by_schedule(lambda c: 0.1 * c), False),
    ("identity", gradtx.identity, False),
    (
        "chain",
        lambda: gradtx.chain(
            gradtx.add_decayed_weights(1e-3), gradtx.scale_by_rms(), gradtx.trace(0.5)
        ),
        False,
    ),
]


def _mesh(axis_type=AxisType.Auto):
    return jax.make_mesh((N_DEVICES,), ("x",), axis_types=(axis_type,))


def _params(seed=0):
    """float32 matrix, vector and complex leaves (first axes divisible by 8), and a small
    vector that cannot be split 8 ways (always replicated)."""
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    return {
        "w": jax.random.normal(k[0], (16, 8), jnp.float32),
        "b": jax.random.normal(k[1], (8,), jnp.float32),
        "z": jax.lax.complex(
            jax.random.normal(k[2], (8, 4), jnp.float32),
            jax.random.normal(k[3], (8, 4), jnp.float32),
        ),
        "odd": jax.random.normal(k[4], (3,), jnp.float32),
    }


def _shardings(mesh, layout, params):
    def spec(path, x):
        split = layout == "fsdp" and x.shape[0] % N_DEVICES == 0
        return NamedSharding(mesh, P("x") if split else P())

    return jax.tree_util.tree_map_with_path(spec, params)


def _grads(host_params, step):
    """Gradients of step ``step``, computed once on the host, so that the sharded and the
    one-device runs update from the very same numbers."""
    return jax.tree.map(lambda p: np.sin(3.0 * np.asarray(p) + step) + 0.1 * step, host_params)


def _check_state_like_params(params, state, where):
    """Each state leaf of a param's shape (complex params: in real view) is sharded
    like that param."""
    flat_p = jax.tree.leaves(params)
    n = 0
    for s in jax.tree.leaves(state):
        for p in flat_p:
            real_shape = (*p.shape, 2) if jnp.iscomplexobj(p) else p.shape
            if s.shape == real_shape and s.ndim > 0:
                # leaves of equal shape share a sharding in _params, so any match will do
                assert isinstance(s.sharding, NamedSharding), (where, s.shape, s.sharding)
                want = p.sharding.spec + (None,) * (s.ndim - p.ndim)
                got = s.sharding.spec + (None,) * (s.ndim - len(s.sharding.spec))
                assert tuple(got)[: len(want)] == tuple(want), (where, s.shape, got, want)
                n += 1
                break
    return n


def _run(tx, needs_value, params, host, shardings, steps=3):
    """``steps`` jitted updates; returns the params and state after each."""

    @jax.jit
    def step(params, state, grads, i):
        extra = {"value": jnp.float32(10.0) - i} if needs_value else {}
        updates, state = tx.update(grads, state, params, **extra)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    out = []
    for i in range(steps):
        grads = jax.device_put(_grads(host, i), shardings)
        params, state = step(params, state, grads, jnp.float32(i))
        out.append((params, state))
    return out


@pytest.mark.parametrize("layout", ["replicated", "fsdp"])
@pytest.mark.parametrize("name,make,needs_value", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_state_and_updates_follow_param_shardings(name, make, needs_value, layout):
    mesh = _mesh()
    tx = make()
    host = _params()
    shardings = _shardings(mesh, layout, host)
    params = jax.device_put(host, shardings)

    n_eager = _check_state_like_params(params, tx.init(params), "eager init")
    n_jit = _check_state_like_params(params, jax.jit(tx.init)(params), "jit init")
    assert n_eager == n_jit

    sharded = _run(tx, needs_value, params, host, shardings)
    one = jax.tree.map(lambda _: jax.devices()[0], host)
    one_device = _run(tx, needs_value, jax.device_put(host, one), host, one)
    for (p, s), (p1, s1) in zip(sharded, one_device):
        for leaf, want in zip(jax.tree.leaves(p), jax.tree.leaves(shardings)):
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (name, leaf.sharding, want)
        _check_state_like_params(p, s, "jitted update")
        for a, b in zip(jax.tree.leaves((p, s)), jax.tree.leaves((p1, s1))):
            # the two programs are compiled apart (per-shard loops, other fusions and
            # FMAs): a few float32 roundings apart, measured against the leaf's scale, as
            # an element that cancels to near 0 (p - u) keeps its operands' rounding
            b = np.asarray(b)
            scale = float(np.max(np.abs(b))) if b.size else 0.0
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-6 * scale + 1e-7)


def test_explicit_mesh_axes_jit_init_keeps_shardings():
    """With ``AxisType.Explicit`` the sharding is part of the type; the state's type
    must carry the param's sharding too (``jnp.zeros(p.shape)`` would not)."""
    mesh = _mesh(AxisType.Explicit)
    host = _params()
    params = jax.device_put(host, _shardings(mesh, "fsdp", host))
    for tx in [gradtx.rprop(), gradtx.rmsprop(momentum=0.9, centered=True)]:
        with jax.set_mesh(mesh):
            assert _check_state_like_params(params, jax.jit(tx.init)(params), "jit") > 0
            assert _check_state_like_params(params, tx.init(params), "eager") > 0


def test_state_built_from_a_traced_hyperparameter_keeps_shardings():
    """``init_leaf`` may close over a traced value (Rprop's initial step size, under a
    meta-gradient or an injected hyperparameter): its state still follows the params,
    whether the params are traced too or concrete."""
    mesh = _mesh()
    host = _params()
    params = jax.device_put(host, _shardings(mesh, "fsdp", host))
    both_traced = jax.jit(lambda p, lr: gradtx.rprop(lr).init(p))(params, 0.1)
    assert _check_state_like_params(params, both_traced, "jit(p, lr)") > 0
    lr_traced = jax.jit(lambda lr: gradtx.rprop(lr).init(params))(0.1)
    assert _check_state_like_params(params, lr_traced, "jit(lr)") > 0


def test_naive_jitted_init_loses_fsdp_sharding():
    """The check above can fail: zeros_like per leaf under jit (optax's init) comes out
    unsharded."""
    mesh = _mesh()
    host = _params()
    params = jax.device_put(host, _shardings(mesh, "fsdp", host))
    naive = jax.jit(lambda p: jax.tree.map(jnp.zeros_like, p))(params)
    with pytest.raises(AssertionError):
        _check_state_like_params(params, naive, "naive")


# --------------------------------------------------------------------------------------
# Data-parallel training
# --------------------------------------------------------------------------------------


def _mlp_params(key):
    # float64 (the suite enables x64): a gradient whose batch terms nearly cancel has a
    # large relative rounding error, which RMSprop's normalisation turns into a visible
    # difference between an 8-way pmean and a one-device mean; in float64 it stays tiny.
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (4, 16), jnp.float64) / 2.0,
        "b1": jnp.zeros(16, jnp.float64),
        "w2": jax.random.normal(k2, (16, 1), jnp.float64) / 4.0,
        "b2": jnp.zeros(1, jnp.float64),
    }


def _loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def _data(n=64):
    kx, _ = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (n, 4), jnp.float64)
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    return x, y


DP_TRANSFORMS = [
    ("rprop", lambda: gradtx.rprop(1e-2)),
    ("rmsprop[wd,momentum,centered]", lambda: gradtx.rmsprop(1e-2, 0.9, 1e-8, 1e-3, 0.9, True)),
]


def _train_one_device(tx, steps=5):
    params = _mlp_params(jax.random.PRNGKey(0))
    state = tx.init(params)
    x, y = _data()

    @jax.jit
    def step(params, state):
        grads = jax.grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.mark.parametrize("name,make", DP_TRANSFORMS, ids=[t[0] for t in DP_TRANSFORMS])
def test_data_parallel_by_sharding_propagation(name, make):
    """The batch is split over 8 devices and params replicated; ``jax.grad`` of the
    mean loss makes XLA all-reduce the gradients (their average over devices)."""
    tx = make()
    mesh = jax.make_mesh((N_DEVICES,), ("data",), axis_types=(AxisType.Auto,))
    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    params = jax.device_put(_mlp_params(jax.random.PRNGKey(0)), replicated)
    state = jax.jit(tx.init)(params)
    x, y = jax.device_put(_data(), batch)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state, x, y):
        grads = jax.grad(_loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    compiled_text = step.lower(params, state, x, y).compile().as_text()
    assert "all-reduce" in compiled_text  # gradients are averaged across devices
    for _ in range(5):
        params, state = step(params, state, x, y)
    for leaf in jax.tree.leaves((params, state)):
        assert leaf.sharding.is_fully_replicated
    want = _train_one_device(make())
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,make", DP_TRANSFORMS, ids=[t[0] for t in DP_TRANSFORMS])
def test_data_parallel_by_shard_map_and_pmean(name, make):
    """Each device takes the gradient of its shard of the batch; ``pmean`` averages
    them; every device then runs the same update on its replica.

    The params are cast to device-varying first: ``jax.grad`` with respect to
    replicated (invariant) params would already *sum* the per-device gradients, and a
    ``pmean`` of that sum is the sum, 8 times the mean."""
    tx = make()
    mesh = jax.make_mesh((N_DEVICES,), ("data",), axis_types=(AxisType.Auto,))
    params = jax.device_put(_mlp_params(jax.random.PRNGKey(0)), NamedSharding(mesh, P()))
    state = tx.init(params)
    x, y = jax.device_put(_data(), NamedSharding(mesh, P("data")))

    @jax.jit
    @functools.partial(
        jax.shard_map, mesh=mesh, in_specs=(P(), P(), P("data"), P("data")), out_specs=P()
    )
    def step(params, state, x, y):
        local = jax.grad(_loss)(jax.lax.pcast(params, "data", to="varying"), x, y)
        grads = jax.lax.pmean(local, "data")
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    for _ in range(5):
        params, state = step(params, state, x, y)
    want = _train_one_device(make())
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
