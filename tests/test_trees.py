"""Another transform's state (or none) passed to ``update``: refused, never read.

The matrix: every public stateful transform's state into every other's ``update``. Each
pair whose states differ in kind (their tree structures, NamedTuple types included)
must raise ``TypeError``/``ValueError`` saying that the state does not belong to the
transform and what it looks like, before any field of it is read (today's internal
``AttributeError: ... has no attribute 'nu'`` must not reach users). Pairs whose states
have one structure (``rmsprop(0.1)`` and ``rmsprop(0.2)``) are the same kind of state and
may be continued: they are counted, not refused.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import pytest

import gradtx

PARAMS = {"w": jnp.ones(3), "b": jnp.ones(2)}
GRADS = {"w": jnp.full(3, 0.5), "b": jnp.full(2, -0.5)}


def _schedule(count):
    return 0.1 / (1.0 + count)


STATEFUL = {
    "scale_by_rms": lambda: gradtx.scale_by_rms(),
    "scale_by_rms(bias_correction)": lambda: gradtx.scale_by_rms(bias_correction=True),
    "scale_by_stddev": lambda: gradtx.scale_by_stddev(),
    "scale_by_stddev(bias_correction)": lambda: gradtx.scale_by_stddev(bias_correction=True),
    "trace": lambda: gradtx.trace(0.9),
    "ema": lambda: gradtx.ema(0.9),
    "scale_by_schedule": lambda: gradtx.scale_by_schedule(_schedule),
    "add_decayed_weights(schedule)": lambda: gradtx.add_decayed_weights(_schedule),
    "zero_nans": lambda: gradtx.zero_nans(),
    "apply_every": lambda: gradtx.apply_every(2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.trace(0.9), 3),
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.trace(0.9), 2),
    "inject_hyperparams(rmsprop)": lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(0.1),
    "inject_hyperparams(rprop)": lambda: gradtx.inject_hyperparams(gradtx.rprop)(0.1),
    "masked": lambda: gradtx.masked(gradtx.trace(0.9), {"w": True, "b": False}),
    "partition": lambda: gradtx.partition(
        {"a": gradtx.trace(0.9), "b": gradtx.scale_by_rms()}, {"w": "a", "b": "b"}
    ),
    "chain": lambda: gradtx.chain(gradtx.trace(0.9), gradtx.ema(0.9)),
    "named_chain": lambda: gradtx.named_chain(("m", gradtx.trace(0.9))),
    "flatten(trace)": lambda: gradtx.flatten(gradtx.trace(0.9)),
    "rmsprop": lambda: gradtx.rmsprop(0.1),
    "rmsprop(centered)": lambda: gradtx.rmsprop(0.1, centered=True),
    "rmsprop(momentum)": lambda: gradtx.rmsprop(0.1, momentum=0.9),
    "rmsprop(centered, momentum)": lambda: gradtx.rmsprop(0.1, momentum=0.9, centered=True),
    "rmsprop(schedule)": lambda: gradtx.rmsprop(_schedule),
    **{
        f"scale_by_rprop({v})": (lambda v=v: gradtx.scale_by_rprop(0.1, variant=v))
        for v in gradtx.RPROP_VARIANTS
    },
    "scale_by_rprop(float32 steps)": lambda: gradtx.scale_by_rprop(
        0.1, min_step_size=0.0, max_step_size=1e30
    ),
    **{f"rprop({v})": (lambda v=v: gradtx.rprop(0.1, variant=v)) for v in gradtx.RPROP_VARIANTS},
    "rprop(maximize)": lambda: gradtx.rprop(0.1, maximize=True),
}

_TX = {name: make() for name, make in STATEFUL.items()}
# The kind of each state, from its abstract value: collecting the pairs below compiles
# nothing (in every xdist worker). The tests use the real states (_STATES).
_KINDS = {name: jax.tree.structure(jax.eval_shape(tx.init, PARAMS)) for name, tx in _TX.items()}


class _States(dict):
    """Each transform's ``init(PARAMS)``, made on first use."""

    def __missing__(self, name):
        self[name] = _TX[name].init(PARAMS)
        return self[name]


_STATES = _States()


def _same_kind(a, b) -> bool:
    return _KINDS[a] == _KINDS[b]


PAIRS = [(a, b) for a, b in itertools.permutations(STATEFUL, 2) if not _same_kind(a, b)]
SAME_KIND = [(a, b) for a, b in itertools.permutations(STATEFUL, 2) if _same_kind(a, b)]


def _update(tx, state):
    return tx.update(GRADS, state, PARAMS, value=jnp.asarray(1.0))


def test_the_matrix_is_the_size_reported():
    n = len(STATEFUL)
    assert len(PAIRS) + len(SAME_KIND) == n * (n - 1)
    assert len(PAIRS) >= 1000  # 34 transforms: 1,122 ordered pairs, nearly all refused
    print(f"{n} stateful transforms, {len(PAIRS)} pairs refused, {len(SAME_KIND)} same kind")


def test_every_transform_runs_on_its_own_state():
    for name, tx in _TX.items():
        _update(tx, _STATES[name])


def test_another_transforms_state_is_refused_for_every_pair():
    bad = []
    for src, dst in PAIRS:
        try:
            _update(_TX[dst], _STATES[src])
        except (TypeError, ValueError) as e:
            msg = str(e)
            if "does not belong" not in msg:
                bad.append((src, dst, msg))
        except Exception as e:  # an internal error: the failure this test looks for
            bad.append((src, dst, f"{type(e).__name__}: {e}"))
        else:
            bad.append((src, dst, "accepted"))
    assert not bad, f"{len(bad)} of {len(PAIRS)} pairs not refused: {bad[:5]}"


def test_the_message_says_what_the_state_is_and_what_is_expected():
    params = {"w": jnp.ones(3)}
    plain = gradtx.rmsprop(0.1).init(params)
    with pytest.raises(TypeError, match=r"does not belong.*ScaleByRStdDevState.*ScaleByRmsState"):
        gradtx.rmsprop(0.1, centered=True).update(params, plain, params)
    with pytest.raises(TypeError, match=r"does not belong.*ScaleByRmsState\(nu\).*got Scale"):
        gradtx.rmsprop(0.1).update(params, gradtx.rprop().init(params), params)
    with pytest.raises(TypeError, match=r"does not belong.*got ScaleByRmsState\(nu=dict"):
        gradtx.rprop().update(params, plain, params)
    with pytest.raises(TypeError, match=r"chain of 2 transforms.*tuple of 3"):
        gradtx.chain(gradtx.trace(0.9), gradtx.ema(0.9)).update(
            params, (plain[0], plain[1], plain[1]), params
        )


@pytest.mark.parametrize("name", [n for n in STATEFUL if n != "zero_nans"])
def test_update_before_init_says_init_comes_first(name):
    """(zero_nans only writes its state: it takes None, as optax's does.)"""
    with pytest.raises(TypeError, match=r"state None: call init\(params\) first"):
        _update(_TX[name], None)


def test_refused_under_jit_too():
    tx = gradtx.rmsprop(0.1, centered=True)
    plain = gradtx.rmsprop(0.1).init(PARAMS)
    with pytest.raises(TypeError, match="does not belong"):
        jax.jit(tx.update)(GRADS, plain, PARAMS)


def test_a_state_rebuilt_with_the_same_layout_is_accepted():
    """A NamedTuple of the same name and fields (a checkpoint restored into a class of
    its own, optax's same-named state) is the same kind of state."""
    import collections

    rebuilt = collections.namedtuple("ScaleByRmsState", ["nu"])
    tx = gradtx.scale_by_rms()
    state = tx.init(PARAMS)
    ours, _ = tx.update(GRADS, state, PARAMS)
    theirs, _ = tx.update(GRADS, rebuilt(*state), PARAMS)
    jax.tree.map(lambda a, b: pytest.approx(a) == b, ours, theirs)
    assert all(jax.tree.leaves(jax.tree.map(jnp.array_equal, ours, theirs)))
