"""optax's contract where gradtx shares a name (issue 9, part 2): eager and jit agree,
abstract inputs, ``state=None`` for stateless blocks, callable-pytree masks, optax's tree
utilities on gradtx states, ``MultiSteps`` dtypes and arguments, ``inject_hyperparams``
values, and alias keywords spelled as optax spells them."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2])}


def grads_at(i, params=PARAMS):
    return jax.tree.map(lambda p: jnp.sin(p * (i + 1.7)) + 0.1 * i, params)


# --------------------------------------------------------------------------------------
# Eager and jit agree: one number in both modes
# --------------------------------------------------------------------------------------


class TestEagerJitBiasCorrection(chex.TestCase):
    """The same steps eagerly and under jit, bit for bit (chex.variants runs both)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_bias_corrected_blocks_one_number_in_both_modes(self):
        for decay in (0.9, 0.999):
            for make in (
                lambda d: gradtx.scale_by_rms(decay=d, bias_correction=True),
                lambda d: gradtx.scale_by_stddev(decay=d, bias_correction=True),
                lambda d: gradtx.ema(d),
                lambda d: gradtx.rmsprop(0.01, alpha=d, centered=True, momentum=0.9),
            ):
                tx = make(decay)
                state, ref_state = tx.init(PARAMS), tx.init(PARAMS)
                step = self.variant(tx.update)
                other = tx.update if step is not tx.update else jax.jit(tx.update)
                for i in range(40):
                    u, state = step(grads_at(i), state, PARAMS)
                    u_ref, ref_state = other(grads_at(i), ref_state, PARAMS)
                    chex.assert_trees_all_equal(u, u_ref)


def test_bias_correction_is_accurate():
    """1 - decay**t against float64 (NumPy): within 4 ulp of the float32 result for every t
    (optax's float32 ``1 - decay**t`` is off by up to 2e-5 relative at decay 0.999)."""
    # deliberately tests a private helper: the formula both modes share
    from gradtx._numerics import one_minus_power

    t = np.arange(1, 3000)
    for decay in (0.9, 0.99, 0.999, 0.9999):
        ours = np.asarray(one_minus_power(decay, jnp.asarray(t, jnp.int32)), np.float64)
        exact = -np.expm1(t * np.log1p(decay - 1.0))
        ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
        assert np.max(np.abs(ours - exact) / ulp) <= 4


# --------------------------------------------------------------------------------------
# Abstract inputs
# --------------------------------------------------------------------------------------

STATEFUL = {
    "scale_by_rms": lambda: gradtx.scale_by_rms(),
    "scale_by_rms[bias_correction]": lambda: gradtx.scale_by_rms(bias_correction=True),
    "scale_by_stddev": lambda: gradtx.scale_by_stddev(),
    "scale_by_rprop": lambda: gradtx.scale_by_rprop(0.1),
    "scale_by_rprop[irprop+]": lambda: gradtx.scale_by_rprop(0.1, variant="irprop+"),
    "trace": lambda: gradtx.trace(0.9),
    "ema": lambda: gradtx.ema(0.9),
    "apply_every": lambda: gradtx.apply_every(3),
    "zero_nans": lambda: gradtx.zero_nans(),
    "scale_by_schedule": lambda: gradtx.scale_by_schedule(gradtx.linear_schedule(1.0, 0.1, 9)),
    "add_decayed_weights[schedule]": lambda: gradtx.add_decayed_weights(lambda c: 0.1),
    "rprop": lambda: gradtx.rprop(),
    "rprop[irprop+]": lambda: gradtx.rprop(variant="irprop+"),
    "rmsprop": lambda: gradtx.rmsprop(momentum=0.9, weight_decay=0.1),
    "rmsprop[centered]": lambda: gradtx.rmsprop(centered=True),
    "chain[optax member]": lambda: gradtx.chain(optax.adam(1e-3), gradtx.rmsprop()),
    "named_chain": lambda: gradtx.named_chain(("a", gradtx.trace(0.9)), ("b", gradtx.ema(0.5))),
    "masked": lambda: gradtx.masked(gradtx.trace(0.9), {"w": True, "b": False}),
    "partition": lambda: gradtx.partition(
        {"x": gradtx.rprop(), "y": gradtx.set_to_zero()}, {"w": "x", "b": "y"}
    ),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(0.1),
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.rmsprop(), 2),
    "MultiSteps[skip]": lambda: gradtx.MultiSteps(
        gradtx.rmsprop(), 2, should_skip_update_fn=gradtx.skip_not_finite
    ),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.rmsprop(), 3),
}


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_init_of_shape_dtype_structs_gives_the_state_structure(name):
    tx = STATEFUL[name]()
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), PARAMS)
    got = tx.init(abstract)
    want = tx.init(PARAMS)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert isinstance(g, jax.ShapeDtypeStruct)  # nothing allocated
        assert (g.shape, g.dtype) == (w.shape, w.dtype)


def test_init_of_one_shape_dtype_struct_keeps_its_sharding():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    p = jax.ShapeDtypeStruct((4, 3), jnp.float32, sharding=sharding)
    state = gradtx.rmsprop(momentum=0.9).init(p)
    leaves = [x for x in jax.tree.leaves(state) if x.shape == (4, 3)]
    assert leaves and all(x.sharding.is_equivalent_to(sharding, 2) for x in leaves)


# --------------------------------------------------------------------------------------
# state=None for stateless blocks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, optax_make",
    [
        (lambda: gradtx.scale(2.0), lambda: optax.scale(2.0)),
        (lambda: gradtx.clip(0.5), lambda: optax.clip(0.5)),
        (lambda: gradtx.add_decayed_weights(0.1), lambda: optax.add_decayed_weights(0.1)),
        (lambda: gradtx.scale_by_learning_rate(0.1), lambda: optax.scale_by_learning_rate(0.1)),
        (lambda: gradtx.set_to_zero(), lambda: optax.set_to_zero()),
        (lambda: gradtx.zero_nans(), lambda: optax.zero_nans()),
        (lambda: gradtx.identity(), lambda: optax.identity()),
    ],
)
def test_stateless_blocks_accept_state_none(make, optax_make):
    g = grads_at(0)
    ours, _ = make().update(g, None, PARAMS)
    theirs, _ = optax_make().update(g, None, PARAMS)
    chex.assert_trees_all_equal(ours, theirs)
    chex.assert_trees_all_equal(jax.jit(make().update)(g, None, PARAMS)[0], theirs)


# --------------------------------------------------------------------------------------
# masked with a callable pytree; optax's tree utilities on masked/partition states
# --------------------------------------------------------------------------------------


@jax.tree_util.register_pytree_node_class
class CallableMask:
    """A pytree that is also callable, as an equinox module is: a mask to read as a tree."""

    def __init__(self, w, b):
        self.w, self.b = w, b

    def __call__(self, *args):
        raise AssertionError("a pytree mask must be read, not called")

    def tree_flatten(self):
        return (self.w, self.b), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


def test_masked_reads_a_callable_pytree_as_a_tree_like_optax():
    params = CallableMask(jnp.array([1.0, -2.0]), jnp.array([0.5]))
    grads = CallableMask(jnp.array([0.1, 0.2]), jnp.array([0.3]))
    mask = CallableMask(True, False)
    ours = gradtx.masked(gradtx.scale(-3.0), mask)
    theirs = optax.masked(optax.scale(-3.0), mask)
    u_ours, _ = ours.update(grads, ours.init(params), params)
    u_theirs, _ = theirs.update(grads, theirs.init(params), params)
    chex.assert_trees_all_equal(u_ours, u_theirs)
    np.testing.assert_array_equal(u_ours.w, -3 * grads.w)
    np.testing.assert_array_equal(u_ours.b, grads.b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.masked(gradtx.rmsprop(momentum=0.9), {"w": True, "b": False}),
        lambda: gradtx.partition(
            {"a": gradtx.rprop(), "f": gradtx.set_to_zero()}, {"w": "a", "b": "f"}
        ),
        lambda: gradtx.chain(
            gradtx.add_decayed_weights(0.1, mask={"w": True, "b": False}), gradtx.rmsprop()
        ),
    ],
    ids=["masked", "partition", "add_decayed_weights[mask]"],
)
def test_optax_tree_utilities_on_masked_and_partition_states(make):
    tx = make()
    state = tx.init(PARAMS)
    _, state = tx.update(grads_at(0), state, PARAMS)
    # map_params: f applied to every params-shaped subtree (MaskedNode kept), the rest
    # (counters) passed to transform_non_params
    mapped = optax.tree.map_params(
        tx.init, lambda v: v + 1, state, transform_non_params=lambda v: v
    )
    assert jax.tree.structure(mapped) == jax.tree.structure(state)
    moved = [
        (a, b)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(mapped))
        if a.shape in {(2, 2), (2,)}
    ]
    assert moved
    for a, b in moved:
        np.testing.assert_array_equal(b, a + 1)
    zeros = optax.tree.zeros_like(state)
    assert jax.tree.structure(zeros) == jax.tree.structure(state)
    u, _ = tx.update(grads_at(1), optax.tree.cast(state, None), PARAMS)
    assert jax.tree.structure(u) == jax.tree.structure(PARAMS)


# --------------------------------------------------------------------------------------
# MultiSteps: any dtype mix; optax's arguments
# --------------------------------------------------------------------------------------

DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16]


@pytest.mark.parametrize("inner", ["optax.adam", "gradtx.rmsprop"])
def test_multisteps_any_dtype_mix(inner):
    """Every (params dtype, grads dtype) pair: 4 steps of MultiSteps under jit, the 9 pairs
    stepped by one program (a retrace for any pair retraces it: none over the 4 steps)."""
    make = (lambda: optax.adam(1e-2)) if inner == "optax.adam" else (lambda: gradtx.rmsprop(1e-2))
    mixes = [(p_dtype, g_dtype) for p_dtype in DTYPES for g_dtype in DTYPES]
    txs = [gradtx.MultiSteps(make(), 2) for _ in mixes]
    params = [jax.tree.map(lambda p, d=p_dtype: p.astype(d), PARAMS) for p_dtype, _ in mixes]
    states = jax.jit(lambda ps: [tx.init(p) for tx, p in zip(txs, ps)])(params)
    cast = jax.jit(lambda g: [jax.tree.map(lambda x, d=d: x.astype(d), g) for _, d in mixes])
    apply = jax.jit(lambda ps, us: [gradtx.apply_updates(p, u) for p, u in zip(ps, us)])

    def update_all(grads, states, params):
        updates, states = zip(*(tx.update(*a) for tx, *a in zip(txs, grads, states, params)))
        return list(updates), list(states)

    chex.clear_trace_counter()  # chex counts per function code, across parametrisations
    step = jax.jit(chex.assert_max_traces(update_all, n=1))  # no retrace over the 4 steps
    for i in range(4):
        us, new_states = step(cast(grads_at(i)), states, params)
        for mix, new_state, state in zip(mixes, new_states, states):
            # the state keeps its dtypes (no cond type mismatch)
            chex.assert_trees_all_equal_dtypes(new_state, state, custom_message=str(mix))
        states = new_states
        params = apply(params, us)
    for mix, p in zip(mixes, params):
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p)), mix


@pytest.mark.parametrize("use_grad_mean", [True, False])
def test_multisteps_optax_arguments(use_grad_mean):
    inner = gradtx.scale_by_learning_rate(0.1)
    ours = gradtx.MultiSteps(
        inner, 3, use_grad_mean=use_grad_mean, should_skip_update_fn=gradtx.skip_not_finite
    )
    theirs = optax.MultiSteps(
        inner, 3, use_grad_mean=use_grad_mean, should_skip_update_fn=optax.skip_not_finite
    )
    s_ours, s_theirs = ours.init(PARAMS), theirs.init(PARAMS)
    for i in range(8):
        g = grads_at(i)
        if i == 2:
            g = {**g, "w": g["w"].at[0, 0].set(jnp.nan)}  # skipped: as if never seen
        u_ours, s_ours = ours.update(g, s_ours, PARAMS)
        u_theirs, s_theirs = theirs.update(g, s_theirs, PARAMS)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)  # local: running mean vs sum
        chex.assert_trees_all_equal(s_ours.skip_state, s_theirs.skip_state)
        assert int(s_ours.mini_step) == int(s_theirs.mini_step)
        assert int(s_ours.gradient_step) == int(s_theirs.gradient_step)


def test_multisteps_reduce_spelling_still_works():
    a = gradtx.MultiSteps(gradtx.scale(1.0), 2, reduce="sum")
    b = gradtx.MultiSteps(gradtx.scale(1.0), 2, use_grad_mean=False)
    sa, sb = a.init(PARAMS), b.init(PARAMS)
    for i in range(4):
        ua, sa = a.update(grads_at(i), sa)
        ub, sb = b.update(grads_at(i), sb)
        chex.assert_trees_all_equal(ua, ub)


# --------------------------------------------------------------------------------------
# inject_hyperparams values
# --------------------------------------------------------------------------------------


def test_inject_bf16_array_hyperparameter_is_numeric():
    lr = jnp.array(0.1, jnp.bfloat16)
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=lr)
    state = tx.init(PARAMS)
    assert "learning_rate" in state.hyperparams  # not static
    assert state.hyperparams["learning_rate"].dtype == jnp.bfloat16


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_inject_typed_array_keeps_its_dtype_like_optax(dtype):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    lr = jnp.array(0.1, dtype)
    ours = gradtx.inject_hyperparams(gradtx.scale_by_learning_rate)(lr).init(params)
    theirs = optax.inject_hyperparams(optax.scale_by_learning_rate)(lr).init(params)
    assert ours.hyperparams["learning_rate"].dtype == theirs.hyperparams["learning_rate"].dtype
    assert ours.hyperparams["learning_rate"].dtype == dtype


def test_inject_prng_key_factory_argument_passes_through():
    def noisy(learning_rate, key):
        del key  # a factory that would draw noise from it
        return gradtx.scale_by_learning_rate(learning_rate)

    key = jax.random.key(0)
    tx = gradtx.inject_hyperparams(noisy)(0.1, key)
    state = tx.init(PARAMS)
    _, state = jax.jit(tx.update)(grads_at(0), state)
    assert state.hyperparams["key"].dtype == key.dtype
    new_key = jax.random.key(1)
    state = gradtx.set_hyperparams(state, key=new_key)
    stored = jax.random.key_data(state.hyperparams["key"])
    np.testing.assert_array_equal(stored, jax.random.key_data(new_key))


def test_set_hyperparams_after_optax_idiom_python_float_in_dict():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1)
    state = tx.init(PARAMS)
    state.hyperparams["learning_rate"] = 1e-3  # optax's idiom
    _, state2 = tx.update(grads_at(0), state, PARAMS)
    state.hyperparams["learning_rate"] = 1e-3
    state = gradtx.set_hyperparams(state, learning_rate=2e-3)
    u, _ = tx.update(grads_at(0), state, PARAMS)
    ref = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=2e-3)
    u_ref, _ = ref.update(grads_at(0), ref.init(PARAMS), PARAMS)
    chex.assert_trees_all_equal(u, u_ref)
    assert state2.hyperparams["learning_rate"].dtype == PARAMS["w"].dtype  # the params'


# --------------------------------------------------------------------------------------
# Alias keywords spelled as optax (or torch) spells them
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, names",
    [
        (lambda: gradtx.rmsprop(decay=0.9), "alpha="),
        (lambda: gradtx.rmsprop(initial_scale=1.0), "scale_by_rms"),
        (lambda: gradtx.rmsprop(eps_in_sqrt=True), "eps_in_sqrt="),
        (lambda: gradtx.rmsprop(bias_correction=True), "bias_correction="),
        (lambda: gradtx.rmsprop(nesterov=True), r"trace\(momentum, nesterov=True\)"),
        (lambda: gradtx.rmsprop(lr=0.1), "learning_rate="),
        (lambda: gradtx.rprop(eta_minus=0.3), r"etas=\(eta_minus, eta_plus\)"),
        (lambda: gradtx.rprop(eta_plus=1.3), r"etas=\(eta_minus, eta_plus\)"),
        (lambda: gradtx.rprop(min_step_size=0.0), r"step_sizes=\(min, max\)"),
        (lambda: gradtx.rprop(max_step_size=1.0), r"step_sizes=\(min, max\)"),
        (lambda: gradtx.rprop(lr=0.1), "learning_rate="),
    ],
)
def test_alias_with_optax_keyword_names_the_gradtx_spelling(call, names):
    with pytest.raises(TypeError, match=names):
        call()


def test_alias_signatures_unchanged_for_inject_hyperparams():
    tx = gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1, alpha=0.9)
    assert set(tx.init(PARAMS).hyperparams) >= {"learning_rate", "alpha"}
