"""Rprop's state (``gradtx/_rprop/_state.py``) means the same whatever transform reads it.

* Continued by a new transform with other step sizes, etas or variant, restored from a
  checkpoint, or with its hyperparameters changed by ``inject_hyperparams``: the run
  equals the papers' pseudo-code run through the same phases (``tests/reference.py``'s
  ``rprop_variant(..., then=...)``), bit for bit, for any hyperparameters (hypothesis).
* A state of another type (iRprop+'s, which keeps the loss; the unpacked one) is refused
  by name, never read as something else.
* float16 step sizes: a positive ``min_step_size`` that rounds to 0 is refused at
  ``init``; the smallest one that does not keeps every weight moving.
* Integer gradients are refused with ``TypeError`` naming the path.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradtx
from tests import reference
from tests.rprop_cases import assert_same_bits, objective, run_gradtx, w0_of

VARIANTS = gradtx.RPROP_VARIANTS
# variants that share a state type continue each other's state; the "+" variants keep a
# pending mark and the hyperparameters it was set under, iRprop+ also the loss
_SAME_STATE = {"irprop-": "rprop-", "rprop-": "irprop-", "rprop+": "rprop+", "irprop+": "irprop+"}


def _continue(phases, w0, *, state=None, t=0):
    """Run ``phases`` [(tx, steps)] one after the other on one state, from params ``w0``
    at step ``t`` (``state``: else the first transform's ``init``); params and step sizes
    after every step."""
    w = {"w": jnp.asarray(w0)}
    ws, ds = [], []
    for tx, steps in phases:
        state = tx.init(w) if state is None else state
        for _ in range(steps):
            e, g = objective(np.asarray(w["w"]), t)
            w, state, d = _step(tx, w, state, {"w": jnp.asarray(g)}, jnp.asarray(e))
            ws.append(np.asarray(w["w"]))
            ds.append(np.asarray(d["w"]))
            t += 1
    return ws, ds, state


@jax.jit
def _step(tx, w, state, g, e):
    """One update, the params moved and the step sizes read: one compiled program per
    transform (a transform is a static argument, equal when built alike), where an eager
    ``inject_hyperparams`` update would build and compile its inner rule at every step."""
    u, state = tx.update(g, state, w, value=e)
    return gradtx.apply_updates(w, u), state, gradtx.rprop_step_sizes(state)


def _tx(variant, lr, etas, step_sizes):
    return gradtx.rprop(lr, etas, step_sizes, variant=variant)


def test_the_issue_example_plus_state_continued_under_a_higher_floor():
    """A "rprop+" state made with step_sizes (1e-6, 50) and continued under (1e-3, 50)
    (the old encoding stepped by -50 where the right step is about -0.17)."""
    w0, lr = w0_of(np.float32), 0.03
    a, b = ((0.5, 1.2), (1e-6, 50.0)), ((0.5, 1.2), (1e-3, 50.0))
    ws, ds, _ = _continue([(_tx("rprop+", lr, *a), 12), (_tx("rprop+", lr, *b), 12)], w0)
    ref_w, ref_d, _ = reference.rprop_variant(
        "rprop+", w0, objective, 12, lr, *a, then=[("rprop+", 12, *b)]
    )
    assert_same_bits(ws, ref_w, "params")
    assert_same_bits(ds, ref_d, "step sizes")
    assert np.max(np.abs(np.diff(ws, axis=0))) < 10  # no step near Δmax after the switch


_ETAS = st.sampled_from([(0.5, 1.2), (0.3, 1.9), (0.75, 1.05)])
_BOUNDS = st.sampled_from([(1e-6, 50.0), (1e-3, 0.4), (0.0, 1.0), (0.05, 0.06), (1e-30, 1e3)])


@settings(max_examples=30, deadline=None)
@given(
    first=st.sampled_from(VARIANTS),
    second=st.sampled_from(VARIANTS),
    etas=st.tuples(_ETAS, _ETAS),
    bounds=st.tuples(_BOUNDS, _BOUNDS),
    steps=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    lr=st.sampled_from([1e-4, 0.03, 2.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_a_state_continued_by_another_transform_equals_the_papers_rule(
    first, second, etas, bounds, steps, lr, dtype
):
    """Any variant's state continued by a variant with the same state type (the "-"
    variants share one), under any valid hyperparameters, packed or not: the reference
    run through both phases, bit for bit."""
    if second not in (first, _SAME_STATE[first]):
        second = _SAME_STATE[first]  # another state type: refused below, not continued
    w0 = w0_of(dtype)
    txs = [_tx(v, lr, e, b) for v, e, b in zip((first, second), etas, bounds)]
    ws, ds, _ = _continue(list(zip(txs, steps)), w0)
    ref_w, ref_d, _ = reference.rprop_variant(
        first, w0, objective, steps[0], lr, etas[0], bounds[0],
        then=[(second, steps[1], etas[1], bounds[1])],
    )  # fmt: skip
    assert_same_bits(ws, ref_w, "params")
    assert_same_bits(ds, ref_d, "step sizes")


_INJECT_DEFAULTS = dict(eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0)


def _injected(variant, **values):
    inject = gradtx.inject_hyperparams(gradtx.scale_by_rprop, static_args="variant")
    return gradtx.chain(inject(0.03, **values, variant=variant), gradtx.scale(-1.0))


@settings(max_examples=12, deadline=None)
@given(
    variant=st.sampled_from(VARIANTS),
    etas=st.tuples(_ETAS, _ETAS),
    bounds=st.tuples(_BOUNDS, _BOUNDS),
    steps=st.tuples(st.integers(1, 8), st.integers(1, 8)),
)
def test_hyperparameters_changed_by_inject_hyperparams_equal_the_papers_rule(
    variant, etas, bounds, steps
):
    """``set_hyperparams`` mid-run (one compiled step for both phases) equals the
    reference switching its hyperparameters at the same step."""
    names = ("eta_minus", "eta_plus", "min_step_size", "max_step_size")
    values = [dict(zip(names, (*e, *b))) for e, b in zip(etas, bounds)]
    tx = _injected(variant, **values[0])
    w0 = w0_of(np.float32)
    w = {"w": jnp.asarray(w0)}
    state, ws, ds, t = tx.init(w), [], [], 0
    # the update reads every hyperparameter from the state, none from the values built
    # in: one transform per variant steps every example (one compiled step, not one per
    # example)
    stepper = _injected(variant, **_INJECT_DEFAULTS)
    for phase, n in enumerate(steps):
        if phase:
            state = (gradtx.set_hyperparams(state[0], **values[1]), state[1])
        for _ in range(n):
            e, g = objective(np.asarray(w["w"]), t)
            w, state, d = _step(stepper, w, state, {"w": jnp.asarray(g)}, jnp.float32(e))
            ws.append(np.asarray(w["w"]))
            ds.append(np.asarray(d["w"]))
            t += 1
    ref_w, ref_d, _ = reference.rprop_variant(
        variant, w0, objective, steps[0], 0.03, etas[0], bounds[0],
        then=[(variant, steps[1], etas[1], bounds[1])],
    )  # fmt: skip
    assert_same_bits(ws, ref_w, "params")
    assert_same_bits(ds, ref_d, "step sizes")


def test_a_restored_state_continues_under_other_hyperparameters(tmp_path):
    w0 = w0_of(np.float32)
    a, b = ((0.5, 1.2), (1e-6, 50.0)), ((0.4, 1.3), (1e-2, 0.2))
    ws, _, state = _continue([(_tx("irprop+", 0.03, *a), 10)], w0)
    gradtx.save_checkpoint(tmp_path / "s", state)
    later = _tx("irprop+", 0.03, *b)
    restored = gradtx.restore_checkpoint(tmp_path / "s", later.init({"w": jnp.asarray(w0)}))
    ws2, ds2, _ = _continue([(later, 10)], ws[-1], state=restored, t=10)
    ref_w, ref_d, _ = reference.rprop_variant(
        "irprop+", w0, objective, 10, 0.03, *a, then=[("irprop+", 10, *b)]
    )
    assert_same_bits(ws + ws2, ref_w, "params")
    assert_same_bits(ds2, ref_d[10:], "step sizes")


@pytest.mark.parametrize(
    "make_state,reader,variant",
    [
        (lambda: gradtx.scale_by_rprop(0.1, variant="irprop+"), "irprop-", "irprop-"),
        (lambda: gradtx.scale_by_rprop(0.1, variant="rprop+"), "irprop+", "irprop+"),
        (lambda: gradtx.scale_by_rprop(0.1, variant="rprop+"), "irprop-", "irprop-"),
        (lambda: gradtx.scale_by_rprop(0.1), "rprop+", "rprop+"),
        (lambda: gradtx.scale_by_rprop(0.1, max_step_size=1e20), "rprop-", "rprop-"),
        (lambda: gradtx.rmsprop(), "rprop+", "rprop+"),
    ],
)
def test_a_state_of_another_type_is_refused_by_name(make_state, reader, variant):
    params = {"w": jnp.ones(3)}
    state = make_state().init(params)
    tx = gradtx.scale_by_rprop(0.1, variant=reader)
    with pytest.raises(ValueError, match=re.escape(f"variant='{variant}'") + ".*does not belong"):
        tx.update(params, state, params, value=1.0)


def test_float16_refuses_a_floor_that_rounds_to_zero_and_keeps_the_smallest_that_does_not():
    params = {"w": jnp.ones(4, jnp.float16)}
    for variant in VARIANTS:
        with pytest.raises(ValueError, match=r"min_step_size.*rounds to 0 in float16.*freeze"):
            gradtx.rprop(1e-2, step_sizes=(1e-8, 50.0), variant=variant).init(params)
        gradtx.rprop(1e-2, step_sizes=(0.0, 50.0), variant=variant).init(params)  # asked for
    # wider step sizes hold 1e-8
    gradtx.rprop(1e-2, step_sizes=(1e-8, 50.0), accumulator_dtype=jnp.float32).init(params)
    # the smallest float16 floor: 40 sign flips take Δ down to it, and it stays above 0
    low = float(np.finfo(np.float16).smallest_subnormal)
    w0 = np.ones(4, np.float16)

    def flips(w, t):
        return np.float16(1.0), np.array([1, -1, 1, -1], np.float16) * (-1) ** t

    for variant in VARIANTS:
        hyper = {"lr": 1e-2, "etas": (0.5, 1.2), "step_sizes": (low, 50.0)}
        ref_w, ref_d, _ = reference.rprop_variant(variant, w0, flips, 40, **hyper)
        tx = gradtx.rprop(1e-2, (0.5, 1.2), (low, 50.0), variant=variant)
        ws, ds, _ = run_gradtx(tx, w0, flips, 40)
        assert_same_bits(ws, ref_w, f"{variant} params")
        assert_same_bits(ds, ref_d, f"{variant} step sizes")
        assert np.all(ds[-1] == np.float16(low))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.uint16, jnp.bool_])
def test_integer_gradients_are_refused_by_path(variant, dtype):
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    grads = {"a": jnp.ones(2), "b": jnp.ones(3, dtype)}
    for tx in (gradtx.rprop(variant=variant), gradtx.scale_by_rprop(0.1, variant=variant)):
        with pytest.raises(TypeError, match=r"updates at path \['b'\].*floating"):
            tx.update(grads, tx.init(params), params, value=1.0)
