"""Every gradtx block that shares a name with optax matches optax 0.2.8, run side by
side across its argument grid; optax.rmsprop's variants are reproduced by documented
gradtx chains; optax's Rprop lag and its complex-number convention are pinned down.

Blocks are compared on the same sequence of gradients (the updates do not feed back,
so every step tests the block, not an accumulated drift); the aliases on trajectories.
Runs are eager (no jit): for blocks this small, compiling each grid point would cost
more than running it. Params mix float32 and float64 leaves of several shapes,
including a scalar and a zero-size array; errors are reported per precision.
"""

from __future__ import annotations

import inspect
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from tests import _tolerance as h

from .recipes import optax_rmsprop as rmsprop_like_optax

STEPS = 12
SHAPES = {
    "m": ((3, 4), np.float64),
    "v": ((5,), np.float32),
    "s": ((), np.float64),
    "n": {"e": ((0,), np.float32), "x": ((2,), np.float32), "y": ((3,), np.float64)},
}


def _tree(rng, scale_exp=(-3, 2), dtype_override=None):
    def leaf(spec):
        shape, dtype = spec
        dtype = dtype_override or dtype
        x = rng.standard_normal(shape) * 10.0 ** rng.integers(*scale_exp, shape)
        return jnp.asarray(x, dtype)

    return jax.tree.map(leaf, SHAPES, is_leaf=lambda x: isinstance(x, tuple))


RNG = np.random.default_rng(42)
PARAMS = _tree(RNG, (0, 1))
GRADS = [_tree(RNG) for _ in range(STEPS)]


def _leaves(seq):
    return [jax.tree.leaves(t) for t in seq]


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
    (theirs_u, _), *nudged = [(_leaves(seq[first:]), s) for seq, s in runs]
    dtypes = [x.dtype for x in jax.tree.leaves(grads[0])]
    h.check_against(
        f"optax.{name}",
        config,
        dtypes,
        _leaves(u_o_seq[first:]),
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


def _grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*axes.values())]


def _id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items())


# Every combination of the three switches, each with two (decay, eps) pairs: a default-like
# and an extreme one (a large eps is where eps_in_sqrt matters most).
RMS_GRID = [
    {"decay": d, "eps": e, **flags}
    for flags in _grid(
        initial_scale=[0.0, 1.0], eps_in_sqrt=[True, False], bias_correction=[False, True]
    )
    for d, e in ((0.9, 1e-8), (0.5, 1e-1))
]


@pytest.mark.parametrize("kw", RMS_GRID, ids=_id)
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
        _id(kw),
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
    _grid(decay=[0.0, 0.9, 1.5], nesterov=[False, True])
    + [
        {"decay": 0.9, "nesterov": n, "accumulator_dtype": d}
        for n in (False, True)
        for d in (jnp.float32, jnp.float64)
    ],
    ids=_id,
)
def test_trace(kw):
    """With an accumulator_dtype wider than the gradient, optax 0.2.8 returns heavy-ball
    updates in the accumulator's dtype; gradtx returns them in the gradient's (its rule:
    an update has its param's dtype). Values are compared after that cast."""
    compare_blocks(
        gradtx.trace(**kw),
        optax.trace(**kw),
        "trace",
        _id(kw),
        cast_theirs="accumulator_dtype" in kw,
    )


def _schedule(count):
    return 0.1 / (1.0 + count)


@pytest.mark.parametrize("wd", [0.0, 0.1, 3.0, _schedule], ids=str)
def test_add_decayed_weights(wd):
    compare_blocks(
        gradtx.add_decayed_weights(wd),
        optax.add_decayed_weights(wd),
        "add_decayed_weights",
        str(wd),
    )


@pytest.mark.parametrize("step", [-1.0, 0.5, 3.0, 0.0])
def test_scale(step):
    compare_blocks(gradtx.scale(step), optax.scale(step), "scale", str(step))


@pytest.mark.parametrize("flip_sign", [True, False])
@pytest.mark.parametrize("lr", [0.1, 2.5, _schedule, None], ids=str)
def test_scale_by_learning_rate(lr, flip_sign):
    compare_blocks(
        gradtx.scale_by_learning_rate(lr, flip_sign=flip_sign),
        optax.scale_by_learning_rate(lr, flip_sign=flip_sign),
        "scale_by_learning_rate",
        f"{lr},{flip_sign}",
    )


@pytest.mark.parametrize(
    "fn", [_schedule, optax.exponential_decay(0.5, 3, 0.5)], ids=["1/(1+t)", "exponential_decay"]
)
def test_scale_by_schedule(fn):
    compare_blocks(
        gradtx.scale_by_schedule(fn), optax.scale_by_schedule(fn), "scale_by_schedule", str(fn)
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


# ----------------------------------------------------------------------------------------
# optax.rmsprop's variants as gradtx chains (trajectories)
# ----------------------------------------------------------------------------------------


RMSPROP_VARIANTS = _grid(
    momentum=[None, 0.9],
    centered=[False, True],
    initial_scale=[0.0, 1.0],
    eps_in_sqrt=[True, False],
    bias_correction=[False, True],
)
RMSPROP_VARIANTS += [{"momentum": 0.9, "nesterov": True, "centered": c} for c in (False, True)]
RMSPROP_VARIANTS += [{"learning_rate": _schedule, "decay": 0.5, "eps": 1e-3}]


def _trajectory(tx, steps=30, zero_first=False, nudge=None):
    """Params after each of ``steps`` updates on g = 0.5 (p - c) + noise (fixed seed);
    ``zero_first``: the first gradient is zero; ``nudge`` (``_tolerance.NUDGES``): the
    initial params or every (nonzero) gradient one ulp up."""
    rng = np.random.default_rng(7)
    target = _tree(rng, (-1, 1))
    noise = [_tree(rng, (-1, 0)) for _ in range(steps)]
    p = h.nudge(PARAMS) if nudge == "params" else PARAMS
    s, out = tx.init(p), []
    for t, n in enumerate(noise):
        g = jax.tree.map(lambda p, c, e: 0.5 * (p - c) + e, p, target, n)
        g = h.nudge(g) if nudge == "grads" else g
        if zero_first and t == 0:
            g = jax.tree.map(jnp.zeros_like, g)
        u, s = tx.update(g, s, p)
        p = gradtx.apply_updates(p, u)
        out.append(p)
    return out


def _check_trajectories(reference, config, ours, theirs_tx, zero_first=False, steps=30):
    """``ours`` (a trajectory) against ``theirs_tx``'s, within the tolerance that
    ``theirs_tx``'s own conditioning allows."""
    theirs = _trajectory(theirs_tx, steps, zero_first)
    nudged = [_leaves(_trajectory(theirs_tx, steps, zero_first, n)) for n in h.NUDGES]
    dtypes = [x.dtype for x in jax.tree.leaves(PARAMS)]
    h.check_against(reference, config, dtypes, _leaves(ours), _leaves(theirs), nudged, steps)


@pytest.mark.parametrize("kw", RMSPROP_VARIANTS, ids=_id)
def test_optax_rmsprop_variants(kw):
    """Trajectories. With centered + bias_correction from a zero initial_scale, the first
    step divides by the root of rounding noise (see test_normalisers), which sends each
    library's trajectory its own way (momentum carries it on): those runs start from a
    zero gradient, for which that step is exactly 0 in both. Centered float32 runs get
    looser tolerances than the rest, measured: the centered variance v - mu^2 cancels on
    this problem, and gradtx writes its averages in torch's rounding order, optax in its
    own (one rounding apart per step)."""
    kw = {"learning_rate": 0.01, **kw}
    zero = bool(kw.get("centered") and kw.get("bias_correction") and not kw.get("initial_scale"))
    ours = _trajectory(rmsprop_like_optax(**kw), zero_first=zero)
    _check_trajectories("optax.rmsprop", _id(kw), ours, optax.rmsprop(**kw), zero)


# ----------------------------------------------------------------------------------------
# Documented differences
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_optax_rprop_lags_one_step(lr):
    """optax 0.2.8's scale_by_rprop returns, at step t, the update gradtx (and torch)
    return at step t-1, zeroed where the gradient's sign flips at t; its first update is
    all zeros. Its step sizes are ours, and its state's ``prev_updates`` is our update of
    this step. (Shown, not copied: gradtx returns this step's.) The alias-level lag:
    :func:`test_optax_rprop_alias_lags_one_step`."""
    grads = [jax.tree.map(lambda x: x.astype(jnp.float64), g) for g in GRADS]
    ours, theirs = gradtx.scale_by_rprop(lr), optax.scale_by_rprop(lr)
    p = jax.tree.map(lambda x: x.astype(jnp.float64), PARAMS)
    s_o, s_t = ours.init(p), theirs.init(p)
    prev_ours = jax.tree.map(jnp.zeros_like, p)
    for t, g in enumerate(grads):
        flip = jax.tree.map(lambda g, s: jnp.sign(g) * s < 0, g, s_o.prev_signs)
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        expected = jax.tree.map(lambda f, u: jnp.where(f, 0.0, u), flip, prev_ours)
        chex.assert_trees_all_equal(u_t, expected)
        chex.assert_trees_all_equal(s_t.step_sizes, s_o.step_sizes)
        # optax holds this step's update (ours) in its state, to return it next step
        chex.assert_trees_all_equal(s_t.prev_updates, u_o)
        if t == 0:
            assert all(not np.asarray(x).any() for x in jax.tree.leaves(u_t))
            assert any(np.asarray(x).any() for x in jax.tree.leaves(u_o))
        prev_ours = u_o
    h.record("optax.scale_by_rprop (lag shown)", f"lr={lr}", "float64", 0.0)


def test_optax_rprop_does_not_clip_first_step():
    """A learning rate above max_step_size: optax keeps it on the first step (its
    'no sign information' branch does not clip), gradtx clips it (torch does too)."""
    p = jnp.zeros(3)
    g = jnp.array([1.0, -1.0, 2.0])
    s_o = gradtx.scale_by_rprop(100.0, max_step_size=50.0).init(p)
    s_t = optax.scale_by_rprop(100.0, max_step_size=50.0).init(p)
    _, s_o = gradtx.scale_by_rprop(100.0, max_step_size=50.0).update(g, s_o, p)
    _, s_t = optax.scale_by_rprop(100.0, max_step_size=50.0).update(g, s_t, p)
    np.testing.assert_array_equal(np.asarray(s_o.step_sizes), 50.0)
    np.testing.assert_array_equal(np.asarray(s_t.step_sizes), 100.0)


def test_complex_convention_differs_from_optax():
    """For complex params gradtx (like torch) normalises real and imaginary parts
    separately; optax divides by sqrt(EMA of |g|^2). gradtx on a complex array equals
    optax on its real view, and differs from optax on the complex array."""
    rng = np.random.default_rng(3)
    p = jnp.asarray(rng.standard_normal(6) + 1j * rng.standard_normal(6))
    gs = [jnp.asarray(rng.standard_normal(6) + 1j * rng.standard_normal(6)) for _ in range(5)]
    ours, theirs = gradtx.scale_by_rms(0.9), optax.scale_by_rms(0.9)
    s_o, s_t, s_r = ours.init(p), theirs.init(p), theirs.init(jnp.stack([p.real, p.imag], -1))
    for g in gs:
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        u_r, s_r = theirs.update(jnp.stack([g.real, g.imag], -1), s_r)
        np.testing.assert_allclose(
            np.asarray(u_o), np.asarray(u_r[..., 0] + 1j * u_r[..., 1]), rtol=1e-12
        )
        assert not np.allclose(np.asarray(u_o), np.asarray(u_t), rtol=1e-3)


def test_optax_rprop_alias_lags_one_step():
    """The same lag in the aliases: optax.rprop(lr) moves at step t by what gradtx.rprop
    (= torch.optim.Rprop) moved at step t-1, nothing where the sign flips at t."""
    p = jax.tree.map(lambda x: x.astype(jnp.float64), PARAMS)
    ours, theirs = gradtx.rprop(0.05), optax.rprop(0.05)
    s_o, s_t = ours.init(p), theirs.init(p)
    prev = jax.tree.map(jnp.zeros_like, p)
    for g in GRADS:
        g = jax.tree.map(lambda x: x.astype(jnp.float64), g)
        flip = jax.tree.map(lambda g, s: jnp.sign(g) * s < 0, g, s_o[0].prev_signs)
        u_o, s_o = ours.update(g, s_o, p)
        u_t, s_t = theirs.update(g, s_t, p)
        expected = jax.tree.map(lambda f, u: jnp.where(f, 0.0, u), flip, prev)
        chex.assert_trees_all_equal(u_t, expected)
        prev = u_o


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


def test_rmsprop_alias_is_torchs_not_optaxs():
    """gradtx.rmsprop follows torch.optim.RMSprop (alpha=0.99, eps outside the root), not
    optax.rmsprop (decay=0.9, eps inside): same name, different defaults and rule. The
    optax form is recipes.optax_rmsprop; with torch's choices the two coincide."""
    torch_form = _trajectory(gradtx.rmsprop(0.01))
    differ = h.scaled_error(_leaves(torch_form), _leaves(_trajectory(optax.rmsprop(0.01))))
    assert differ > 1e-3
    same = rmsprop_like_optax(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)
    _check_trajectories(
        "gradtx.rmsprop == optax.rmsprop(decay=.99, eps_in_sqrt=False)", "", torch_form, same
    )


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
        (gradtx.scale_by_schedule(_schedule), optax.scale_by_schedule(_schedule)),
    ]
    for ours, theirs in pairs:
        a, b = ours.init(PARAMS), theirs.init(PARAMS)
        assert a._fields == b._fields
        assert jax.tree.structure(tuple(a)) == jax.tree.structure(tuple(b))
