"""The schedule builders (gradtx/_schedules.py; the joined and warm-up ones of
_schedules_joined.py and the cyclic ones of _schedules_cyclic.py in the same tables, where
a check covers every builder): against optax's (same names, arguments and numbers), at
every count of a range that crosses each boundary, eagerly and under jit; bad arguments
refused at construction, by class; traced arguments give the concrete build's values or
are refused by name; a polynomial decay stays between its ends under jit. join_schedules
against hand-written values: test_schedules_joined.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import gradtx

CASES = [
    ("constant_schedule", dict(value=0.3)),
    (
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.01, power=2, transition_steps=20, transition_begin=5),
    ),
    ("polynomial_schedule", dict(init_value=1.0, end_value=0.5, power=1, transition_steps=0)),
    ("linear_schedule", dict(init_value=0.0, end_value=0.1, transition_steps=10)),
    ("piecewise_constant_schedule", dict(init_value=0.1, boundaries_and_scales={7: 0.5, 20: 0.1})),
    ("exponential_decay", dict(init_value=0.1, transition_steps=4, decay_rate=0.5)),
    (
        "exponential_decay",
        dict(
            init_value=0.1,
            transition_steps=3,
            decay_rate=0.5,
            transition_begin=5,
            staircase=True,
            end_value=0.01,
        ),
    ),
    ("exponential_decay", dict(init_value=0.1, transition_steps=1, decay_rate=1.1, end_value=0.2)),
    ("cosine_decay_schedule", dict(init_value=0.1, decay_steps=25, alpha=0.1, exponent=2.0)),
    ("warmup_constant_schedule", dict(init_value=0.0, peak_value=1.0, warmup_steps=8)),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30, end_value=0.05),
    ),
]


@pytest.mark.parametrize("name, kwargs", CASES)
def test_same_values_as_optax(name, kwargs):
    ours, theirs = getattr(gradtx, name)(**kwargs), getattr(optax, name)(**kwargs)
    counts = jnp.arange(40, dtype=jnp.int32)
    a = jax.jit(jax.vmap(ours))(counts) if name != "constant_schedule" else None
    for t in range(40):
        c = jnp.asarray(t, jnp.int32)
        np.testing.assert_allclose(ours(c), theirs(c), rtol=1e-15, atol=0)
        if a is not None:
            np.testing.assert_allclose(a[t], theirs(c), rtol=1e-6, atol=0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decay_steps"):
        gradtx.cosine_decay_schedule(1.0, 0)
    with pytest.raises(ValueError, match="boundaries_and_scales"):
        gradtx.piecewise_constant_schedule(1.0, {3: -0.5})
    with pytest.raises(ValueError, match="boundaries"):
        gradtx.join_schedules([gradtx.constant_schedule(1.0)] * 2, [1, 2])


@settings(max_examples=40, deadline=None)
@given(
    init=st.floats(-10, 10, width=32),
    end=st.floats(-10, 10, width=32),
    steps=st.integers(1, 1000),
    power=st.sampled_from([1.0, 2.0, 0.5]),
)
@example(init=0.0, end=1.401298464324817e-45, steps=1, power=2.0)  # a subnormal end
def test_polynomial_schedule_stays_between_its_ends_under_jit(init, end, steps, power):
    """Under jit XLA may divide by the constant step count as a multiply by its rounded
    reciprocal; the value must still never leave [init, end] (a linear decay of a weight
    decay to 0 gave -3e-9 at its last step), and from the last step on it is end_value
    exactly, as eagerly."""
    sched = jax.jit(gradtx.polynomial_schedule(init, end, power, steps))
    counts = jnp.array([0, steps // 2, steps - 1, steps, steps + 5], jnp.int32)
    values = np.asarray(jax.vmap(sched)(counts), np.float64)
    lo, hi = min(np.float32(init), np.float32(end)), max(np.float32(init), np.float32(end))
    # (init - end) * frac + end rounds within an ulp of the ends (optax's formula too)
    ulp = 2 * np.spacing(np.float32(max(abs(init), abs(end))))
    assert np.all(values >= lo - ulp) and np.all(values <= hi + ulp), values
    # XLA:CPU computes with subnormals flushed to zero: a subnormal end_value comes out 0
    held = np.float32(end) if abs(np.float32(end)) >= np.finfo(np.float32).tiny else 0.0
    assert values[3] == held and values[4] == held
    if end == 0:  # a decay to 0 never changes sign (a weight decay never turns negative)
        assert np.all(values * np.sign(init) >= 0), values


# Bad arguments, by class: each row is (builder, valid kwargs, argument, its kind, values out
# of its range or None, how the bad value is placed: by default as the argument itself).
_NOT_A_NUMBER = st.one_of(
    st.text(max_size=3),
    st.none(),
    st.booleans(),
    st.just(np.bool_(True)),
    st.complex_numbers(max_magnitude=1e3),
    st.lists(st.floats(0, 1), max_size=2),
    st.just(jnp.array([1.0, 2.0])),
    st.just(lambda t: t),
)
_NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf, np.float32(np.nan)])
_FRACTIONAL = st.floats(-1e6, 1e6).filter(lambda x: x != int(x))
_BEYOND_INT32 = st.one_of(st.integers(2**31, 2**62), st.integers(-(2**62), -(2**31) - 1))
_HASHABLE_BAD_STEP = st.one_of(
    st.text(max_size=3), st.none(), st.booleans(), _FRACTIONAL, _BEYOND_INT32
)
_NEGATIVE = st.floats(-1e6, -1e-6)
_POLY = dict(init_value=1.0, end_value=0.0, power=2, transition_steps=10, transition_begin=2)
_EXP = dict(init_value=1.0, transition_steps=4, decay_rate=0.5, transition_begin=1, end_value=0.1)
_COS = dict(init_value=1.0, decay_steps=10, alpha=0.1, exponent=2.0)
_WCOS = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=10, end_value=0.1)
_WEXP = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, transition_steps=3, decay_rate=0.5)
_ONE = dict(transition_steps=100, peak_value=1.0, div_factor=25.0, final_div_factor=1e4)
_LIN = dict(init_value=0.0, end_value=1.0, transition_steps=4)
_WCON = dict(init_value=0.0, peak_value=1.0, warmup_steps=3)
_PIECEWISE = {
    "piecewise_constant_schedule": dict(init_value=1.0),
    "piecewise_interpolate_schedule": dict(interpolate_type="cosine", init_value=1.0),
}
_PCT = st.one_of(_NEGATIVE, st.floats(1.001, 10))
_TWO = [gradtx.constant_schedule(1.0), gradtx.constant_schedule(0.5)]
_JOIN = dict(schedules=_TWO, boundaries=[3])
_JOIN3 = dict(schedules=[*_TWO, _TWO[0]], boundaries=[3, 5])
R, S = "real", "steps"
BAD_ROWS = [
    ("constant_schedule", dict(value=0.1), "value", R, None, None),
    *(("polynomial_schedule", _POLY, a, R, None, None) for a in ("init_value", "end_value")),
    ("polynomial_schedule", _POLY, "power", R, _NEGATIVE, None),
    *(
        ("polynomial_schedule", _POLY, a, S, None, None)
        for a in ("transition_steps", "transition_begin")
    ),
    ("linear_schedule", _LIN, "end_value", R, None, None),
    ("linear_schedule", _LIN, "transition_steps", S, None, None),
    *((k, v, "init_value", R, None, None) for k, v in _PIECEWISE.items()),
    *(
        (k, v, "boundaries_and_scales", R, _NEGATIVE, lambda x: {3: x})
        for k, v in _PIECEWISE.items()
    ),
    *(
        (k, v, "boundaries_and_scales", None, None, lambda x: {x: 0.5})
        for k, v in _PIECEWISE.items()
    ),
    (
        "piecewise_interpolate_schedule",
        _PIECEWISE["piecewise_interpolate_schedule"],
        "interpolate_type",
        R,
        None,
        None,
    ),
    ("exponential_decay", _EXP, "init_value", R, None, None),
    ("exponential_decay", _EXP, "end_value", "optional", None, None),
    ("exponential_decay", _EXP, "decay_rate", R, _NEGATIVE, None),
    *(
        ("exponential_decay", _EXP, a, S, None, None)
        for a in ("transition_steps", "transition_begin")
    ),
    *(("cosine_decay_schedule", _COS, a, R, None, None) for a in ("init_value", "alpha")),
    ("cosine_decay_schedule", _COS, "exponent", R, _NEGATIVE, None),
    ("cosine_decay_schedule", _COS, "decay_steps", S, st.integers(-100, 0), None),
    ("join_schedules", _JOIN, "boundaries", S, None, lambda v: [v]),
    ("join_schedules", _JOIN, "schedules", "schedule", None, lambda v: [_TWO[0], v]),
    ("join_schedules", _JOIN3, "boundaries", S, st.integers(-100, 2), lambda v: [3, v]),
    ("warmup_constant_schedule", _WCON, "peak_value", R, None, None),
    ("warmup_constant_schedule", _WCON, "warmup_steps", S, st.integers(-100, -1), None),
    *(
        ("warmup_cosine_decay_schedule", _WCOS, a, R, None, None)
        for a in ("init_value", "peak_value", "end_value")
    ),
    ("warmup_cosine_decay_schedule", _WCOS, "exponent", R, _NEGATIVE, None),
    ("warmup_cosine_decay_schedule", _WCOS, "warmup_steps", S, st.integers(-100, -1), None),
    ("warmup_cosine_decay_schedule", _WCOS, "decay_steps", S, st.integers(-100, 2), None),
    *((f"{k}_onecycle_schedule", _ONE, "peak_value", R, None, None) for k in ("linear", "cosine")),
    *(
        (f"{k}_onecycle_schedule", _ONE, "transition_steps", S, st.integers(-100, 0), None)
        for k in ("linear", "cosine")
    ),
    *(
        (f"{k}_onecycle_schedule", _ONE, a, R, st.floats(-1e6, 0), None)
        for k in ("linear", "cosine")
        for a in ("div_factor", "final_div_factor")
    ),
    *((f"{k}_onecycle_schedule", _ONE, "pct_start", R, _PCT, None) for k in ("linear", "cosine")),
    ("linear_onecycle_schedule", _ONE, "pct_final", R, _PCT, None),
    *(
        ("warmup_exponential_decay_schedule", _WEXP, a, R, None, None)
        for a in ("init_value", "peak_value")
    ),
    ("warmup_exponential_decay_schedule", _WEXP, "decay_rate", R, _NEGATIVE, None),
    ("warmup_exponential_decay_schedule", _WEXP, "warmup_steps", S, st.integers(-100, -1), None),
    ("warmup_exponential_decay_schedule", _WEXP, "transition_steps", S, None, None),
    (
        "sgdr_schedule",
        dict(cosine_kwargs=[_WCOS]),
        "cosine_kwargs",
        S,
        st.integers(-100, 2),
        lambda v: [_WCOS, {**_WCOS, "decay_steps": v}],
    ),
    ("sgdr_schedule", dict(cosine_kwargs=[_WCOS]), "cosine_kwargs", R, None, lambda v: [v]),
]


def _bad_values(kind, out_of_range):
    """The classes of values wrong for an argument of this kind."""
    if kind is None:  # a dict key: hashable values only
        return _HASHABLE_BAD_STEP
    if kind == "optional":  # a real number or None
        return _bad_values(R, out_of_range).filter(lambda v: v is not None)
    if kind == "schedule":  # anything but a function
        return st.one_of(_NOT_A_NUMBER.filter(lambda v: not callable(v)), _NON_FINITE)
    wrong = [_NOT_A_NUMBER, _NON_FINITE] + ([_FRACTIONAL, _BEYOND_INT32] if kind == S else [])
    return st.one_of(*wrong, *([out_of_range] if out_of_range is not None else []))


def _row_id(row):
    return f"{row[0]}-{row[2]}"


@pytest.mark.parametrize("row", BAD_ROWS, ids=[_row_id(r) for r in BAD_ROWS])
def test_bad_arguments_refused_at_construction(row):
    """Every class of wrong value (a str, None, a bool, a complex, an array, a function,
    NaN or inf, a fractional step count, a value out of range) is refused when the schedule
    is built, with a ValueError or TypeError naming the argument: never an internal
    error, a NaN or a string coming out of the schedule later."""
    name, valid, arg, kind, out_of_range, place = row

    @settings(max_examples=12, deadline=None, database=None)
    @given(_bad_values(kind, out_of_range))
    def check(bad):
        kwargs = {**valid, arg: bad if place is None else place(bad)}
        with pytest.raises((ValueError, TypeError), match=arg):
            getattr(gradtx, name)(**kwargs)

    check()


_STEP_ROWS = [r for r in BAD_ROWS if r[3] in (S, None)]


@pytest.mark.parametrize("row", _STEP_ROWS, ids=[_row_id(r) for r in _STEP_ROWS])
def test_step_counts_beyond_int32_refused_at_construction(row):
    """The count is an int32: a step count of 2**31 (or below -2**31) is refused by name
    when the schedule is built, not left to overflow inside jax at its first call."""
    name, valid, arg, _, _, place = row
    for bad in (2**31, -(2**31) - 1):
        kwargs = {**valid, arg: bad if place is None else place(bad)}
        with pytest.raises(ValueError, match=arg):
            getattr(gradtx, name)(**kwargs)


@pytest.mark.parametrize("name", sorted({r[0] for r in BAD_ROWS}))
def test_the_valid_rows_build(name):
    """The valid arguments the table breaks one at a time build a finite schedule, from
    Python numbers and from JAX scalars alike (arrays are read once, at construction)."""
    valid = next(r[1] for r in BAD_ROWS if r[0] == name)
    as_arrays = {k: jnp.asarray(v) if isinstance(v, float) else v for k, v in valid.items()}
    for kwargs in (valid, as_arrays):
        assert np.isfinite(float(getattr(gradtx, name)(**kwargs)(jnp.int32(3))))


def test_optax_degenerate_cases_kept_and_traced_values_pass():
    """optax's defined degenerate cases stay (a constant); traced values are not read."""
    assert gradtx.polynomial_schedule(2.0, 0.0, 1, transition_steps=0)(5) == 2.0
    assert gradtx.exponential_decay(2.0, transition_steps=-1, decay_rate=0.5)(5) == 2.0
    assert gradtx.exponential_decay(2.0, 4, decay_rate=0.0)(5) == 2.0
    assert float(gradtx.linear_schedule(0.0, 1.0, 4, transition_begin=-3)(2)) == 0.5
    traced = jax.jit(
        lambda v, b: gradtx.join_schedules(
            [gradtx.constant_schedule(v), gradtx.linear_schedule(v, 0.0, 4)], [b]
        )(jnp.int32(4))
    )
    assert float(traced(1.0, 2)) == 0.5


# Arguments that decide a schedule's form in Python (which branch, where its phases end):
# refused traced. Every other number may be traced and gives the concrete build's values.
_FORM = {"decay_rate", "pct_start", "pct_final"}
_TRACEABLE_ROWS = [
    r
    for r in BAD_ROWS
    if r[3] in (R, S, "optional") and r[5] is None and isinstance(r[1].get(r[2]), int | float)
]


_COUNTS = jnp.arange(0, 120, 7, dtype=jnp.int32)  # an argument: no constant folding


def _row_value(row):
    """The row's valid value of its argument as a JAX scalar, and its builder with the
    other valid arguments."""
    name, valid, arg, kind, _, _ = row
    value = jnp.asarray(valid[arg], jnp.int32 if kind == S else jnp.float32)
    return value, lambda x: getattr(gradtx, name)(**{**valid, arg: x})


def _values_of(schedule):
    """The schedule's values at ``_COUNTS``, in one jitted program."""
    return jax.jit(lambda c: jax.vmap(schedule)(c))(_COUNTS)


@pytest.mark.parametrize("row", _TRACEABLE_ROWS, ids=[_row_id(r) for r in _TRACEABLE_ROWS])
def test_a_traced_argument_gives_the_concrete_values_or_is_refused_by_name(row):
    """Each argument traced in turn (the schedule built inside ``jax.jit``): either its
    values at every count equal the schedule built from the concrete number, or (step
    counts, and the numbers of ``_FORM``) a TypeError naming the argument and saying to
    build the schedule outside jit; never jax's own concretization error."""
    arg, kind = row[2], row[3]
    value, build = _row_value(row)
    traced = jax.jit(lambda x, c: jax.vmap(build(x))(c))
    if kind == S or arg in _FORM:
        with pytest.raises(TypeError, match=rf"Invalid {arg}: .*must be concrete.*outside jax.jit"):
            traced(value, _COUNTS)
    else:
        np.testing.assert_array_equal(traced(value, _COUNTS), _values_of(build(value)))


@pytest.mark.parametrize("row", _TRACEABLE_ROWS, ids=[_row_id(r) for r in _TRACEABLE_ROWS])
def test_a_concrete_array_closed_over_inside_jit_builds_the_same_schedule(row):
    """Each argument in turn a concrete JAX array captured by a jitted function that builds
    the schedule (an optimizer made inside a jitted ``init``): the values at every count
    equal the schedule built outside from the same array, never jax's concretization
    error (the builders read step counts and the numbers that fix the form as Python
    numbers once checked)."""
    value, build = _row_value(row)
    inside = jax.jit(lambda c: jax.vmap(build(value))(c))
    np.testing.assert_array_equal(inside(_COUNTS), _values_of(build(value)))
