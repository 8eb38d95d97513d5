"""gradtx.join_transforms against the joined transforms run by hand, one after the other.

The reference is the obvious loop: transform 0 for ``boundaries[0]`` updates, then
transform 1 (its state made by its own ``init``), ... Every test compares the joined
transform's updates, params and inner states with that loop, on a small float64 least
squares problem (``optax.lbfgs``'s line search included).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

A = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float64)
B = jnp.asarray(np.arange(6.0), jnp.float64)


def loss(params):
    r = A @ params["w"] + params["b"] - B
    return 0.5 * jnp.sum(r**2) + 0.1 * jnp.sum(jnp.sin(params["w"]))


# put on the device as they are (jnp.array compiles a conversion per shape, at collection)
PARAMS0 = {
    "w": jax.device_put(np.array([0.5, -1.0, 2.0], np.float64)),
    "b": jax.device_put(np.array(0.3, np.float64)),
}


def _run(tx, steps, params=PARAMS0, jit=True, extra=True):
    """Run ``tx`` for ``steps`` updates; return the params after each, and the state."""

    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        kw = {"value": value, "grad": grads, "value_fn": loss} if extra else {}
        u, s = tx.update(grads, s, p, **kw)
        return gradtx.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    state, trajectory = tx.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        trajectory.append(params)
    return trajectory, state


def _by_hand(transforms, boundaries, steps, extras=None):
    """The reference: each transform from its own init, for its own segment (with the
    extra arguments where ``extras[i]``, default all)."""
    ends = [*boundaries, steps]
    extras = extras or [True] * len(transforms)
    trajectory, states, params, start = [], [], PARAMS0, 0
    for tx, end, extra in zip(transforms, ends, extras):
        part, state = _run(tx, end - start, params, extra=extra)
        trajectory += part
        states.append(state)
        params, start = (part[-1] if part else params), end
    return trajectory, states


def _close(a, b):
    chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "name, make",
    [
        ("adam->lbfgs", lambda: [optax.adam(0.05), optax.lbfgs()]),
        (
            "rprop->sgd->irprop+",
            lambda: [gradtx.rprop(0.05), optax.sgd(0.01), gradtx.rprop(variant="irprop+")],
        ),
    ],
)
def test_matches_the_transforms_run_by_hand(name, make):
    """Updates and params equal the by-hand loop's at every step (the switch step
    included), and each inner state equals its transform's state at the end of its turn;
    value=, grad= and value_fn= reach L-BFGS and iRprop+ (they would fail without)."""
    boundaries = [4, 9][: len(make()) - 1]
    steps = 14
    joined, state = _run(gradtx.join_transforms(make(), boundaries), steps)
    reference, states = _by_hand(make(), boundaries, steps)
    _close(joined, reference)
    _close(state.inner_states, tuple(states))
    assert int(state.count) == steps


def test_switch_step_follows_join_schedules():
    """Update t is made by transform #{b <= t}, the count join_schedules uses."""
    scales = [1.0, 2.0, 3.0]
    boundaries = [2, 5]
    tx = gradtx.join_transforms([gradtx.scale(c) for c in scales], boundaries)
    schedule = gradtx.join_schedules([gradtx.constant_schedule(c) for c in scales], boundaries)
    g = {"w": jnp.ones(2)}
    state = tx.init(g)
    for t in range(8):
        u, state = tx.update(g, state)
        np.testing.assert_array_equal(u["w"], np.full(2, float(schedule(t))))


def test_a_transform_resumes_its_own_state():
    """With [A, B, A'] sharing nothing, a transform that runs again starts from where its
    own earlier turn left it: here one rprop object used twice keeps two states, each
    made by init (not shared), and the inactive ones do not move."""
    rprop = gradtx.rprop(0.05)
    tx = gradtx.join_transforms([rprop, optax.sgd(0.01), rprop], [3, 5])
    _, state = _run(tx, 5)
    _, first = _run(rprop, 3)
    _close(state.inner_states[0], first)
    _close(state.inner_states[2], rprop.init(PARAMS0))


def test_plain_optax_transform_drops_extra_args():
    """A plain optax.GradientTransformation (update takes no **kwargs) inside the join
    gets no extra arguments, as optax.chain does; the extra-args one gets them."""
    plain = optax.GradientTransformation(lambda p: optax.EmptyState(), lambda u, s, p=None: (u, s))
    tx = gradtx.join_transforms([plain, gradtx.rprop(variant="irprop+")], [1])
    trajectory, _ = _run(tx, 3)
    reference, _ = _by_hand([plain, gradtx.rprop(variant="irprop+")], [1], 3, [False, True])
    _close(trajectory, reference)


def test_inject_hyperparams_inside():
    """inject_hyperparams (gradtx's and optax's) inside the join: its hyperparameters stay
    in its state and the numbers are the by-hand loop's."""
    make = lambda: [  # noqa: E731
        optax.inject_hyperparams(optax.adam)(learning_rate=0.05),
        gradtx.inject_hyperparams(gradtx.rprop)(learning_rate=0.01),
    ]
    joined, state = _run(gradtx.join_transforms(make(), [3]), 6)
    reference, states = _by_hand(make(), [3], 6)
    _close(joined, reference)
    _close(state.inner_states, tuple(states))
    assert float(state.inner_states[0].hyperparams["learning_rate"]) == 0.05


def test_one_trace_across_the_switch():
    """One jit-compiled step serves every segment: crossing the boundaries does not
    retrace (so does not recompile). gradtx's states are typed once by init: one trace."""
    tx = gradtx.join_transforms([gradtx.rprop(0.05), gradtx.rmsprop(0.01), gradtx.rprop()], [2, 4])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        u, s = tx.update(grads, s, p, value=value)
        return gradtx.apply_updates(p, u), s

    params, state = PARAMS0, tx.init(PARAMS0)
    for _ in range(7):
        params, state = step(params, state)
    assert int(state.count) == 7


def test_optax_lbfgs_inside_retraces_only_as_it_does_alone():
    """optax.lbfgs's initial state holds weak-typed scalars that its first update makes
    strong, so a jitted optax.lbfgs step alone is traced twice (at steps 0 and 1). Joined
    (boundaries at steps 3 and 5), the step is traced no more than that, and never at or
    after a switch."""

    def traces_after_each_step(tx):
        traces, seen = [], []

        @jax.jit
        def step(p, s):
            traces.append(1)
            value, grads = jax.value_and_grad(loss)(p)
            u, s = tx.update(grads, s, p, value=value, grad=grads, value_fn=loss)
            return gradtx.apply_updates(p, u), s

        params, state = PARAMS0, tx.init(PARAMS0)
        for _ in range(8):
            params, state = step(params, state)
            seen.append(len(traces))
        return seen

    alone = traces_after_each_step(optax.lbfgs())
    joined = traces_after_each_step(
        gradtx.join_transforms([optax.adam(0.05), gradtx.rprop(0.01), optax.lbfgs()], [3, 5])
    )
    assert alone == [1, 2, 2, 2, 2, 2, 2, 2]
    assert joined[-1] <= 2 and joined[2:] == [joined[-1]] * 6, joined


def test_donated_step_matches():
    """Under jax.jit with the params and state donated, across the switch, the numbers
    are the undonated step's (init makes distinct buffers, so nothing is donated twice)."""
    make = lambda: gradtx.join_transforms([gradtx.rprop(0.05), optax.lbfgs()], [3])  # noqa: E731
    reference, ref_state = _run(make(), 6)
    tx = make()

    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        u, s = tx.update(grads, s, p, value=value, grad=grads, value_fn=loss)
        return gradtx.apply_updates(p, u), s

    donated = jax.jit(step, donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, PARAMS0)
    state = tx.init(params)
    for _ in range(6):
        params, state = donated(params, state)
    _close(params, reference[-1])
    _close(state, ref_state)


def test_eager_equals_jit_and_abstract_init():
    tx = gradtx.join_transforms([gradtx.rprop(0.05), optax.adam(0.01)], [2])
    eager, _ = _run(tx, 4, jit=False)
    jitted, _ = _run(tx, 4)
    _close(eager, jitted)
    abstract = tx.init(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), PARAMS0))
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, tx.init(PARAMS0))


def test_single_transform_is_that_transform():
    joined, _ = _run(gradtx.join_transforms([gradtx.rprop(0.05)], []), 4)
    reference, _ = _run(gradtx.rprop(0.05), 4)
    _close(joined, reference)


@pytest.mark.parametrize(
    "boundaries, match",
    [
        ([], r"boundaries: \[\] \(need len\(transforms\) - 1 = 1"),
        ([3, 5], r"boundaries: \[3, 5\] \(need len\(transforms\) - 1 = 1"),
        ([0], r"boundaries\[0\]: 0 \(boundaries must be positive"),
        ([-2], r"boundaries\[0\]: -2"),
        ([2.5], r"boundaries\[0\]: 2.5 \(must be a Python int"),
        ([True], r"boundaries\[0\]: True"),
        (3, r"boundaries: 3 \(must be a list of ints"),
        ([2**31], r"must fit in int32"),
    ],
)
def test_bad_boundaries(boundaries, match):
    with pytest.raises(ValueError, match=match):
        gradtx.join_transforms([optax.adam(0.1), optax.sgd(0.1)], boundaries)


def test_boundaries_strictly_increasing():
    with pytest.raises(ValueError, match=r"boundaries\[1\]: 3 .*strictly increasing"):
        gradtx.join_transforms([optax.sgd(0.1)] * 3, [3, 3])


@pytest.mark.parametrize(
    "transforms, match",
    [
        ([], r"transforms: \[\]"),
        (optax.adam(0.1), r"transforms: .*must be a list or tuple"),
        ([optax.adam(0.1), optax.adam], r"transforms\[1\]: .*optax.adam\(1e-3\)"),
    ],
)
def test_bad_transforms(transforms, match):
    with pytest.raises((TypeError, ValueError), match=match):
        gradtx.join_transforms(transforms, [1])
