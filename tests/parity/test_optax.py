"""Every gradtx block that shares a name with optax matches optax 0.2.8, run side by
side across its argument grid; optax.rmsprop's variants are reproduced by documented
gradtx chains (``test_optax_aliases.py``, with optax's Rprop lag and its complex-number
convention).

Blocks are compared on the same sequence of gradients (the updates do not feed back,
so every step tests the block, not an accumulated drift); the aliases on trajectories.
Runs are eager (no jit): for blocks this small, compiling each grid point would cost
more than running it. Params mix float32 and float64 leaves of several shapes,
including a scalar and a zero-size array; errors are reported per precision.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests import _tolerance as h

from .optax_cases import GRADS, PARAMS, config_id, count_schedule, grid, leaves_of, value_id


def _run_block(tx, params, grads, nudge=None):
    """The updates ``tx`` returns for ``grads`` in turn (``params`` fixed) and its final
    state; ``nudge`` (``_tolerance.NUDGES``): params or every gradient one ulp up."""
    params = h.nudge(params) if nudge == "params" else params
    grads = [h.nudge(g) for g in grads] if nudge == "grads" else grads
    s, out = tx.init(params), []
    for g in grads:
        u, s = tx.update(g, s, params)
        out.append(u)
    return out, s


def compare_blocks(
    ours,
    theirs,
    name,
    config,
    params=PARAMS,
    grads=GRADS,
    compare_state=True,
    ill_conditioned_first=False,
    cast_theirs=False,
):
    """Feed the same gradients to both transforms; compare updates (and state leaves),
    within the tolerance that optax's own conditioning allows (its runs with params, then
    gradients, one ulp up).

    ``ill_conditioned_first``: the first step's updates are left out of the comparison
    (see :func:`test_normalisers`); its state is still compared. ``cast_theirs``: optax's
    updates may come in another dtype than the gradient's (compared after a cast to ours,
    which is always the gradient's)."""
    u_o_seq, s_o = _run_block(ours, params, grads)
    u_t_seq, s_t = _run_block(theirs, params, grads)
    runs = [(u_t_seq, s_t)] + [_run_block(theirs, params, grads, n) for n in h.NUDGES]
    for u_o, u_t, g in zip(u_o_seq, u_t_seq, grads):
        assert jax.tree.structure(u_o) == jax.tree.structure(u_t)
        for a, b, gi in zip(jax.tree.leaves(u_o), jax.tree.leaves(u_t), jax.tree.leaves(g)):
            assert a.dtype == gi.dtype, (name, config, a.dtype, gi.dtype)
            assert cast_theirs or a.dtype == b.dtype, (name, config, a.dtype, b.dtype)
    if cast_theirs:
        runs = [
            ([jax.tree.map(lambda t, o: t.astype(o.dtype), u, u_o_seq[0]) for u in seq], s)
            for seq, s in runs
        ]
    first = 1 if ill_conditioned_first else 0
    (theirs_u, _), *nudged = [(leaves_of(seq[first:]), s) for seq, s in runs]
    dtypes = [x.dtype for x in jax.tree.leaves(grads[0])]
    h.check_against(
        f"optax.{name}",
        config,
        dtypes,
        leaves_of(u_o_seq[first:]),
        theirs_u,
        [u for u, _ in nudged],
        len(grads) - first,
    )
    if compare_state:
        _compare_states(name, config, s_o, s_t, [s for _, s in nudged], grads)


def _compare_states(name, config, s_o, s_t, nudged, grads):
    """The same state layout (NamedTuple fields, in order) and values: the final state,
    scaled as the updates are, each leaf within the tolerance of its ``nudged`` values. A
    leaf is as precise as the coarser of its dtype and the gradient it accumulates (a
    float64 trace of float32 gradients carries float32's rounding)."""
    assert [x._fields for x in jax.tree.leaves(s_o, is_leaf=_is_nt) if _is_nt(x)] == [
        x._fields for x in jax.tree.leaves(s_t, is_leaf=_is_nt) if _is_nt(x)
    ]
    gdef = jax.tree.structure(grads[0])
    tracked = []  # per state leaf: the dtype of the gradient leaf it follows, or its own
    for sub in jax.tree.leaves(s_t, is_leaf=lambda x: jax.tree.structure(x) == gdef):
        same = jax.tree.structure(sub) == gdef
        tracked += [g.dtype for g in jax.tree.leaves(grads[0])] if same else [sub.dtype]
    nudged = [jax.tree.leaves(s) for s in nudged]
    for i, (a, b) in enumerate(zip(jax.tree.leaves(s_o), jax.tree.leaves(s_t), strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, (name, config, a.dtype, b.dtype)
        if a.dtype.kind in "iu":  # step counts
            np.testing.assert_array_equal(a, b)
            continue
        prec = max(h.precision(a.dtype), h.precision(tracked[i]), key=h.eps)
        d_self = max(h.scaled_error([n[i]], [b]) for n in nudged)
        tol = h.tolerance(prec, len(grads), d_self)
        h.check(f"optax.{name}", config, prec, h.scaled_error([a], [b]), tol, " (final state)")


def _is_nt(x):
    return hasattr(x, "_fields")


# Every combination of the three switches, each with two (decay, eps) pairs: a default-like
# and an extreme one (a large eps is where eps_in_sqrt matters most).
RMS_GRID = [
    {"decay": d, "eps": e, **flags}
    for flags in grid(
        initial_scale=[0.0, 1.0], eps_in_sqrt=[True, False], bias_correction=[False, True]
    )
    for d, e in ((0.9, 1e-8), (0.5, 1e-1))
]


@pytest.mark.parametrize("kw", RMS_GRID, ids=config_id)
@pytest.mark.parametrize("name", ["scale_by_rms", "scale_by_stddev"])
def test_normalisers(name, kw):
    """With bias correction, scale_by_stddev's first step divides by the square root of
    nu_hat - mu_hat^2 = g^2 - g^2, zero in exact arithmetic: what both libraries compute
    there is rounding noise (plus eps), amplified by |g| / sqrt(eps), or NaN when the
    noise is negative and eps is outside the root, in either library. Compiling optax's
    own update with jit changes that step by more than 1e-12 too, so that one step's
    updates are not compared (its state, and every later step, are)."""
    ill = name == "scale_by_stddev" and kw["bias_correction"] and kw["initial_scale"] == 0
    compare_blocks(
        getattr(gradtx, name)(**kw),
        getattr(optax, name)(**kw),
        name,
        config_id(kw),
        ill_conditioned_first=ill,
    )


def test_first_stddev_step_is_ill_conditioned_in_optax_itself():
    """The claim behind test_normalisers' exception: on that first step optax moves by far
    more than float64's ceiling (``_tolerance.ceiling``: no tolerance could test it) when
    its decay is nudged one ulp, which leaves the exact value of the step, g / sqrt(eps),
    unchanged and changes only how it rounds. (Eager against jit showed it too, but only
    where XLA contracts to fused multiply-adds: not on an SSE4.2-only host.)"""
    g = GRADS[0]["m"]

    def first_step(decay):
        tx = optax.scale_by_stddev(decay, bias_correction=True)
        return tx.update(g, tx.init(g))[0]

    nudged = first_step(float(np.nextafter(0.9, 1.0)))
    assert h.scaled_error([nudged], [first_step(0.9)]) > h.ceiling("float64")


@pytest.mark.parametrize(
    "kw",
    grid(decay=[0.0, 0.9, 1.5], nesterov=[False, True])
    + [
        {"decay": 0.9, "nesterov": n, "accumulator_dtype": d}
        for n in (False, True)
        for d in (jnp.float32, jnp.float64)
    ],
    ids=config_id,
)
def test_trace(kw):
    """With an accumulator_dtype wider than the gradient, optax 0.2.8 returns heavy-ball
    updates in the accumulator's dtype; gradtx returns them in the gradient's (its rule:
    an update has its param's dtype). Values are compared after that cast."""
    compare_blocks(
        gradtx.trace(**kw),
        optax.trace(**kw),
        "trace",
        config_id(kw),
        cast_theirs="accumulator_dtype" in kw,
    )


@pytest.mark.parametrize("wd", [0.0, 0.1, 3.0, count_schedule], ids=value_id)
def test_add_decayed_weights(wd):
    compare_blocks(
        gradtx.add_decayed_weights(wd),
        optax.add_decayed_weights(wd),
        "add_decayed_weights",
        value_id(wd),
    )


@pytest.mark.parametrize("step", [-1.0, 0.5, 3.0, 0.0])
def test_scale(step):
    compare_blocks(gradtx.scale(step), optax.scale(step), "scale", str(step))


def test_scale_by_minus_one_is_optax_product_on_special_values():
    """``scale(-1.0)`` compiles to a negation (one instruction instead of three): the
    same bits as optax's product for zeros of both signs, infinities and subnormals
    (a NaN stays a NaN; its sign bit is not a value)."""
    g = jnp.asarray([0.0, -0.0, np.inf, -np.inf, 1e-45, -3.5, np.nan], jnp.float32)
    ours = jax.jit(lambda g: gradtx.scale(-1.0).update(g, gradtx.EmptyState())[0])(g)
    theirs = jax.jit(lambda g: optax.scale(-1.0).update(g, optax.EmptyState())[0])(g)
    np.testing.assert_array_equal(
        np.asarray(ours[:-1]).view(np.uint32), np.asarray(theirs[:-1]).view(np.uint32)
    )
    assert np.isnan(ours[-1]) and np.isnan(theirs[-1])


@pytest.mark.parametrize("flip_sign", [True, False])
@pytest.mark.parametrize("lr", [0.1, 2.5, count_schedule, None], ids=value_id)
def test_scale_by_learning_rate(lr, flip_sign):
    compare_blocks(
        gradtx.scale_by_learning_rate(lr, flip_sign=flip_sign),
        optax.scale_by_learning_rate(lr, flip_sign=flip_sign),
        "scale_by_learning_rate",
        f"{value_id(lr)},{flip_sign}",
    )


@pytest.mark.parametrize(
    "fn",
    [count_schedule, optax.exponential_decay(0.5, 3, 0.5)],
    ids=["1/(1+t)", "exponential_decay"],
)
def test_scale_by_schedule(fn):
    compare_blocks(
        gradtx.scale_by_schedule(fn), optax.scale_by_schedule(fn), "scale_by_schedule", value_id(fn)
    )


def test_chain():
    """gradtx.chain of gradtx blocks == optax.chain of optax blocks; and chains that mix
    the two libraries' members either way."""

    def blocks(first, second):  # the four blocks, alternately from each library
        return (
            first.add_decayed_weights(0.01),
            second.scale_by_stddev(0.9),
            first.trace(0.5, nesterov=True),
            second.scale_by_learning_rate(0.1),
        )

    theirs = optax.chain(*blocks(optax, optax))
    compare_blocks(gradtx.chain(*blocks(gradtx, gradtx)), theirs, "chain", "gradtx blocks")
    mixed = gradtx.chain(*blocks(optax, gradtx))
    compare_blocks(mixed, theirs, "chain", "mixed members in gradtx.chain")
    mixed = optax.chain(*blocks(gradtx, optax))
    compare_blocks(mixed, theirs, "chain", "mixed members in optax.chain")


def test_apply_updates():
    """Same sums, same dtypes (the param's), None leaves kept."""
    params = {**PARAMS, "none": None}
    for g in GRADS[:3]:
        for upd in (g, jax.tree.map(lambda x: x.astype(jnp.float64), g)):
            upd = {**upd, "none": None}
            ours, theirs = gradtx.apply_updates(params, upd), optax.apply_updates(params, upd)
            assert jax.tree.structure(ours, is_leaf=lambda x: x is None) == jax.tree.structure(
                theirs, is_leaf=lambda x: x is None
            )
            for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            h.record("optax.apply_updates", "mixed dtypes, None leaves", "float64", 0.0)


def test_global_norm():
    """One value per tree, against optax's and optax's with every leaf one ulp up; the
    errors can accumulate over the sum of the squares of every element."""
    for g in GRADS[:3]:
        ours, theirs = float(gradtx.global_norm(g)), float(optax.tree.norm(g))
        d_self = abs(float(optax.tree.norm(h.nudge(g))) - theirs) / theirs
        terms = sum(x.size for x in jax.tree.leaves(g))
        tol = h.tolerance("float32", terms, d_self)
        err = abs(ours - theirs) / theirs
        h.check("optax.global_norm", "mixed float32/float64 tree", "float32", err, tol)


def test_multi_transform():
    labels = {"m": "a", "v": "b", "s": "a", "n": {"e": "b", "x": "a", "y": "b"}}
    ours = gradtx.multi_transform({"a": gradtx.scale_by_rms(0.9), "b": gradtx.trace(0.5)}, labels)
    theirs = optax.multi_transform({"a": optax.scale_by_rms(0.9), "b": optax.trace(0.5)}, labels)
    compare_blocks(ours, theirs, "multi_transform", "rms | trace", compare_state=False)


def test_join_schedules():
    """25 values, against optax's and optax's with its values one float32 ulp up."""

    def joined(lib, value):
        return lib.join_schedules(
            [lib.constant_schedule(value), lib.linear_schedule(value, 0.0, 10)], [5]
        )

    counts = jnp.arange(25, dtype=jnp.int32)
    a = np.asarray([joined(gradtx, 0.1)(c) for c in counts])
    b = np.asarray([joined(optax, 0.1)(c) for c in counts])
    nudged = np.asarray([joined(optax, h.nudge(np.float32(0.1)))(c) for c in counts])
    tol = h.tolerance("float32", 1, h.scaled_error([nudged], [b]))
    h.check(
        "optax.join_schedules", "constant then linear", "float32", h.scaled_error([a], [b]), tol
    )


def test_identity():
    compare_blocks(gradtx.identity(), optax.identity(), "identity", "")


def test_every_shared_name_is_compared_with_optax():
    """Every public gradtx function whose name optax also has is run against optax
    somewhere in the suite: here, or (issue 5's clipping, wrappers, combinators and
    schedules) in a test file that runs optax's namesake."""
    import pathlib

    here = {
        "global_norm", "multi_transform", "join_schedules", "scale_by_rms", "scale_by_stddev",
        "trace", "add_decayed_weights", "scale", "scale_by_learning_rate", "scale_by_schedule",
        "chain", "apply_updates", "identity", "scale_by_rprop", "rprop", "rmsprop",
    }  # fmt: skip
    tests = pathlib.Path(__file__).resolve().parents[1]
    texts = [p.read_text() for p in tests.rglob("test_*.py")]

    def compared(n):  # optax.<name>, or the quoted name in a file that runs optax
        return any(f"optax.{n}" in t or ("import optax" in t and f'"{n}"' in t) for t in texts)

    shared = [
        n for n in gradtx.__all__ if hasattr(optax, n) and inspect.isfunction(getattr(gradtx, n))
    ]
    missing = [n for n in shared if n not in here and not compared(n)]
    assert not missing, f"gradtx names shared with optax but never compared with it: {missing}"


def test_state_layouts_match_optax():
    """Same field names and trees as optax's states: tools that look into an optax state
    by field name (``optax.tree_utils.tree_get``, ...) find the same things in ours."""
    pairs = [
        (gradtx.scale_by_rms(), optax.scale_by_rms()),
        (gradtx.scale_by_rms(bias_correction=True), optax.scale_by_rms(bias_correction=True)),
        (gradtx.scale_by_stddev(), optax.scale_by_stddev()),
        (gradtx.trace(0.9), optax.trace(0.9)),
        (gradtx.scale_by_schedule(count_schedule), optax.scale_by_schedule(count_schedule)),
    ]
    for ours, theirs in pairs:
        a, b = ours.init(PARAMS), theirs.init(PARAMS)
        assert a._fields == b._fields
        assert jax.tree.structure(tuple(a)) == jax.tree.structure(tuple(b))
