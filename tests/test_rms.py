"""``gradtx.rmsprop(weight_decay=...)`` computes the L2 penalty inside its normaliser's
rule (the documented ``weight_decay=`` of ``scale_by_rms``/``scale_by_stddev``), so
that XLA keeps no temporary buffer for g + wd * theta (``tests/properties/test_donation.py``
checks that part). Here: it is the chain its docstring states, block for block, bit
for bit: the same state tree and the same numbers as ``scale(-1) ->
add_decayed_weights -> scale_by_stddev | scale_by_rms -> trace ->
scale_by_learning_rate`` built from the public blocks, in every dtype, jitted and
eager, with the weight decay a number or an injected (traced) hyperparameter. Then the
normalisers' edges (gradtx/_rms.py): float16, integer gradients, decay 0, their
``weight_decay=``/``maximize=`` arguments."""

from __future__ import annotations

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from tests import _tolerance as h
from tests._runners import random_array

STEPS = 5


def _build(name, *args, **kwargs):
    """The public block ``gradtx.<name>(*args, **kwargs)``, built afresh."""
    return getattr(gradtx, name)(*args, **kwargs)


# The same blocks, built once per arguments and shared between chains (as a user's
# chains would share them): an eager update compiles one program per transform
# instance and tree signature, so a rebuilt-alike block compiles again.
_shared_block = functools.cache(_build)


def _explicit_chain(lr, alpha, eps, weight_decay, momentum, centered, maximize, acc, block=_build):
    """torch's RMSprop from the public blocks, as ``gradtx.rmsprop``'s docstring lists
    (each made by ``block(name, *args, **kwargs)``)."""
    blocks = [block("scale", -1.0)] if maximize else []
    blocks.append(block("add_decayed_weights", weight_decay))
    normaliser = "scale_by_stddev" if centered else "scale_by_rms"
    blocks.append(block(normaliser, alpha, eps, eps_in_sqrt=False, accumulator_dtype=acc))
    if not (isinstance(momentum, float) and momentum == 0.0):  # an array: traced
        blocks.append(block("trace", momentum, accumulator_dtype=acc))
    blocks.append(block("scale_by_learning_rate", lr))
    return gradtx.chain(*blocks)


# (dtype of the params, accumulator_dtype)
DTYPES = [
    (jnp.float32, None),
    (jnp.float64, None),
    (jnp.bfloat16, None),
    (jnp.bfloat16, jnp.float32),
    (jnp.float16, None),
    (jnp.complex64, None),
]
CONFIGS = list(itertools.product([0.0, 0.9], [False, True], [False, True]))


def _problem(dtype, seed=0):
    """Params and a gradient sequence of mixed scales (the penalty and the gradient
    both matter), in ``dtype``."""
    rng = np.random.default_rng(seed)

    def draw(shape, scale=1.0):
        return random_array(rng, shape, dtype, scale)

    params = {"w": draw((33, 7)), "b": draw((7,), 10.0), "s": draw(())}
    grads = [
        jax.tree.map(lambda p, i=i: draw(p.shape, 0.1 * (i + 1)), params) for i in range(STEPS)
    ]
    return params, grads


def _run(tx, params, grads, jit):
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    history = []
    for g in grads:
        params, state = step(params, state, g)
        history.append((params, state))
    return history


def _run_each(txs, params, grads, jit):
    """``[_run(tx, params, grads, jit) for tx in txs]``; jitted, every transform's step
    is one branch of ONE jitted program (one compile, not one per transform).

    That program is the disjoint union of the per-transform steps: each transform gets
    its own params, state and gradient as arguments of its own (the gradient array is
    passed once per transform, so no two branches share an input) and nothing flows
    between branches. XLA computes element by element within each branch (CSE can only
    merge within a branch, fusion does not change what an element is computed from), so
    every branch's numbers are those of ``jax.jit`` of that transform's step alone: what
    a user's jitted step computes (checked when this was written: each branch equal to
    its own program, bit for bit, in all 48 cases). The steps loop in Python: the program
    compiles once either way, and a ``lax.scan`` would not be the user's step. Eagerly
    each transform runs its own programs, as a user's eager step does (they cannot be
    batched)."""
    if not jit:
        return [_run(tx, params, grads, False) for tx in txs]

    @jax.jit
    def step(ps, ss, gs):
        out = []
        for tx, p, s, g in zip(txs, ps, ss, gs):
            u, s = tx.update(g, s, p)
            out.append((gradtx.apply_updates(p, u), s))
        return tuple(out)

    carry = tuple((params, tx.init(params)) for tx in txs)
    histories = [[] for _ in txs]
    for g in grads:
        carry = step(*zip(*carry), (g,) * len(txs))
        for history, entry in zip(histories, carry):
            history.append(entry)
    return histories


def _for_config(check, config, jit, *trees):
    """``check(*trees)``, its failure naming the configuration and the mode."""
    try:
        check(*trees)
    except AssertionError as e:
        momentum, centered, maximize = config
        mode = "jitted" if jit else "eager"
        e.add_note(f"momentum={momentum}, centered={centered}, maximize={maximize}, {mode}")
        raise


@pytest.mark.parametrize("dtype,acc", DTYPES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_weight_decay_inside_the_normaliser_is_the_chain_bit_for_bit(dtype, acc):
    """Every (momentum, centered, maximize) of ``CONFIGS`` in ``dtype``: ``rmsprop`` and
    the explicit chain, each configuration compared on its own, jitted and eager. The
    jitted steps of the eight configurations run as one program for ``rmsprop`` and one
    for the chains (``_run_each``: the same numbers as eight programs); ``rmsprop``'s and
    the chain's are never in one program, where XLA could merge what they share."""
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs jax_enable_x64")
    params, grads = _problem(dtype)
    ours, theirs = [], []
    for momentum, centered, maximize in CONFIGS:
        args = (3e-3, 0.9, 1e-8, 0.05, momentum, centered, maximize, acc)
        ours.append(gradtx.rmsprop(*args[:6], maximize=maximize, accumulator_dtype=acc))
        theirs.append(_explicit_chain(*args, block=_shared_block))
    if acc is None:
        for jit in (True, False):
            runs = zip(
                CONFIGS, _run_each(ours, params, grads, jit), _run_each(theirs, params, grads, jit)
            )
            for config, a, b in runs:
                _for_config(chex.assert_trees_all_equal_structs, config, jit, a, b)
                _for_config(chex.assert_trees_all_equal, config, jit, a, b)
    else:
        # Averages wider than the params: g + wd * theta is rounded to the param's dtype
        # and then widened, as the blocks state. The jitted chain need not round it (XLA
        # may keep a fused bfloat16 expression in float32); gradtx stores it, so its
        # jitted and eager steps give the eager chain's numbers.
        references = _run_each(theirs, params, grads, False)
        for jit in (True, False):
            for config, a, b in zip(CONFIGS, _run_each(ours, params, grads, jit), references):
                _for_config(chex.assert_trees_all_equal, config, jit, a, b)


@pytest.mark.parametrize("centered", [False, True])
def test_injected_weight_decay_matches_the_chain(centered):
    """``inject_hyperparams`` hands the weight decay in as a traced array: the penalty
    then multiplies by that array, still without a block of its own. Against the chain
    of blocks under the same injection, to the suite's tolerance (``_tolerance``), not
    bit for bit: with the decay traced, LLVM fuses a different product of the average's
    multiply-add in the two programs (``_rms_math.ema_sq``), one rounding of each ν."""
    hyper = {"learning_rate": 3e-3, "alpha": 0.9, "weight_decay": 0.05, "momentum": 0.9}

    def explicit(learning_rate, alpha, weight_decay, momentum):
        args = (learning_rate, alpha, 1e-8, weight_decay, momentum, centered, False, None)
        return _explicit_chain(*args)

    ours = gradtx.inject_hyperparams(gradtx.rmsprop)(**hyper, centered=centered)
    theirs = gradtx.inject_hyperparams(explicit)(**hyper)
    params, grads = _problem(jnp.float32)

    def trajectory(tx, params, grads):  # params and the inner state, step by step
        return [(p, s.inner_state) for p, s in _run(tx, params, grads, True)]

    reference = trajectory(theirs, params, grads)
    nudged = [
        trajectory(theirs, h.nudge(params), grads),
        trajectory(theirs, params, [h.nudge(g) for g in grads]),
    ]
    h.check_trajectories(
        "gradtx chain of blocks",
        f"rmsprop injected weight_decay centered={centered}",
        trajectory(ours, params, grads),
        reference,
        nudged,
        STEPS,
    )


def test_scheduled_weight_decay_keeps_its_block():
    """A schedule for the weight decay keeps the ``add_decayed_weights`` block (its step
    count is state): the alias is then the explicit chain object for object."""
    schedule = gradtx.linear_schedule(0.1, 0.0, 4)
    tx = gradtx.rmsprop(1e-2, weight_decay=schedule, momentum=0.9)
    params, grads = _problem(jnp.float32)
    state = tx.init(params)
    assert type(state[0]).__name__ == "WeightDecayScheduleState"
    theirs = _explicit_chain(1e-2, 0.99, 1e-8, schedule, 0.9, False, False, None)
    chex.assert_trees_all_equal(_run(tx, params, grads, True), _run(theirs, params, grads, True))


# ---------------------------------------------------------------------------------------
# Edges of RMSprop's normalisers (``gradtx/_rms.py``): results right or refused.
#
# * centered RMSprop never steps uphill in float16 on a tiny gradient (torch as reference);
# * integer and bool gradients are refused by path;
# * decay 0 is valid with bias correction (NumPy reference of the formula);
# * the documented ``weight_decay=`` / ``maximize=`` of the normalisers give the numbers of
#   the chain of separate blocks run eagerly (``scale(-1)``, ``add_decayed_weights``);
# (``_rms_math.py``'s 1 / (1 - beta^t) against optax's and exact: test_rms_math.py.)
# ---------------------------------------------------------------------------------------


torch = pytest.importorskip("torch")

TINY = st.floats(min_value=1e-7, max_value=1e-3).flatmap(lambda m: st.sampled_from([m, -m]))


@settings(max_examples=30, deadline=None)
@given(gs=st.lists(TINY, min_size=3, max_size=3), eps=st.sampled_from([1e-8, 0.0]))
def test_centered_float16_never_steps_uphill(gs, eps):
    """Tiny float16 gradients: the variance cancels to -0 and eps rounds to 0; torch's
    step is downhill (possibly infinite), and so must gradtx's be, eagerly and jitted."""
    g = np.asarray(gs, np.float16)
    p0 = np.ones(3, np.float16)
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.RMSprop([tp], lr=0.01, eps=eps, centered=True)
    tx = gradtx.rmsprop(0.01, eps=eps, centered=True)
    for update in (tx.update, jax.jit(tx.update)):
        params = {"w": jnp.asarray(p0)}
        state = tx.init(params)
        u, state = update({"w": jnp.asarray(g)}, state, params)
        step = np.asarray(u["w"], np.float64)
        assert np.all(step * g <= 0) or np.all(np.isnan(step)), (g, step)
    tp.grad = torch.tensor(g)
    opt.step()
    ours = np.asarray(gradtx.apply_updates({"w": jnp.asarray(p0)}, u)["w"])
    theirs = tp.detach().numpy()
    # the same side of p0 (or the same infinity) as torch, element by element
    np.testing.assert_array_equal(np.sign(ours - p0), np.sign(theirs - p0))
    inf = np.isinf(theirs)
    np.testing.assert_array_equal(ours[inf], theirs[inf])


INT_DTYPES = [jnp.int8, jnp.int32, jnp.uint8, jnp.bool_]
NORMALISERS = {
    "rmsprop": lambda: gradtx.rmsprop(0.1),
    "rmsprop[centered,wd,max]": lambda: gradtx.rmsprop(
        0.1, weight_decay=0.1, centered=True, maximize=True
    ),
    "scale_by_rms": lambda: gradtx.scale_by_rms(),
    "scale_by_stddev": lambda: gradtx.scale_by_stddev(bias_correction=True),
}


@pytest.mark.parametrize("name", list(NORMALISERS))
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_integer_gradients_are_refused_by_path(name, dtype):
    tx = NORMALISERS[name]()
    params = {"a": jnp.ones(2), "b": {"w": jnp.ones(3)}}
    grads = {"a": jnp.ones(2), "b": {"w": jnp.ones(3, dtype)}}
    state = tx.init(params)
    for update in (tx.update, jax.jit(tx.update)):
        with pytest.raises(TypeError, match=r"updates.* at path \['b'\]\['w'\]"):
            update(grads, state, params)


def _numpy_rms(gs, decay, eps, centered):
    """scale_by_rms / scale_by_stddev with bias correction, from the formula, float64."""
    mu = nu = np.zeros_like(gs[0])
    out = []
    for t, g in enumerate(gs, 1):
        mu = decay * mu + (1 - decay) * g
        nu = decay * nu + (1 - decay) * g * g
        c = 1 / (1 - decay**t)
        var = nu * c - (mu * c) ** 2 if centered else nu * c
        out.append(g / np.sqrt(var + eps))
    return out


@pytest.mark.parametrize("centered", [False, True])
def test_decay_zero_with_bias_correction(centered):
    """decay = 0 is valid: 1 - 0**t = 1 (it crashed with a math domain error); a traced
    decay 0 (inject_hyperparams) as well."""
    make = gradtx.scale_by_stddev if centered else gradtx.scale_by_rms
    rng = np.random.default_rng(0)
    gs = [rng.normal(size=4) for _ in range(3)]
    want = _numpy_rms(gs, 0.0, 1e-8, centered)
    for tx in (
        make(0.0, bias_correction=True),
        gradtx.inject_hyperparams(make)(decay=0.0, bias_correction=True),
    ):
        for update in (tx.update, jax.jit(tx.update)):
            state = tx.init({"w": jnp.zeros(4)})
            for g, w in zip(gs, want):
                u, state = update({"w": jnp.asarray(g, jnp.float32)}, state)
                np.testing.assert_allclose(u["w"], w, rtol=1e-5, atol=1e-6)


def _eager_chain(name, maximize, weight_decay, **kw):
    """``chain(scale(-1), add_decayed_weights, gradtx.<name>)`` of shared blocks (one
    eager program per block and signature, not one per example)."""
    blocks = [_shared_block("scale", -1.0)] if maximize else []
    blocks.append(_shared_block("add_decayed_weights", weight_decay))
    return gradtx.chain(*blocks, _shared_block(name, **kw))


@settings(max_examples=20, deadline=None)
@given(
    centered=st.booleans(),
    maximize=st.booleans(),
    weight_decay=st.sampled_from([0.0, 0.05, 2.0]),
    eps_in_sqrt=st.booleans(),
    bias_correction=st.booleans(),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.complex64]),
)
def test_normaliser_input_arguments_are_the_chain(
    centered, maximize, weight_decay, eps_in_sqrt, bias_correction, dtype
):
    """``scale_by_*(weight_decay=, maximize=)``: the updates of ``chain(scale(-1),
    add_decayed_weights, scale_by_*)`` run eagerly, bit for bit, jitted or eager; the
    normaliser's state is the chain's last entry."""
    name = "scale_by_stddev" if centered else "scale_by_rms"
    kw = dict(decay=0.9, eps_in_sqrt=eps_in_sqrt, bias_correction=bias_correction)
    ours = getattr(gradtx, name)(weight_decay=weight_decay, maximize=maximize, **kw)
    theirs = _eager_chain(name, maximize, weight_decay, **kw)
    rng = np.random.default_rng(1)

    def draw(shape):
        return random_array(rng, shape, dtype)

    params = {"w": draw((5, 3)), "b": draw(())}
    grads = [jax.tree.map(lambda p: draw(p.shape), params) for _ in range(3)]
    ref_state = theirs.init(params)
    ref = []
    for g in grads:
        u, ref_state = theirs.update(g, ref_state, params)
        ref.append((u, ref_state[-1]))
    for update in (ours.update, jax.jit(ours.update)):
        state = ours.init(params)
        for g, (u_ref, s_ref) in zip(grads, ref):
            u, state = update(g, state, params)
            chex.assert_trees_all_equal((u, state), (u_ref, s_ref))


def test_normaliser_weight_decay_refusals():
    with pytest.raises(TypeError, match=r"weight_decay.*add_decayed_weights"):
        gradtx.scale_by_rms(weight_decay=lambda t: 0.1)
    with pytest.raises(ValueError, match="Invalid weight_decay"):
        gradtx.scale_by_stddev(weight_decay=-1.0)
    with pytest.raises(ValueError, match="Invalid maximize"):
        gradtx.scale_by_rms(maximize="yes")
    tx = gradtx.scale_by_rms(weight_decay=0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
