"""Lucid's and Dragon's Rprop/RMSprop, as their API pages (``/work/shared/seeds``) define
them, reproduced by the gradtx chains of ``recipes.py``.

Neither library installs here (``lucid-dl`` needs Python >= 3.12 and Apple's MLX;
``seeta-dragon`` has no wheel for this platform), so each is a NumPy reference written
from its page (``tests/reference.py``), step by step, in the params' dtype. Where a page
leaves a choice open the docstring says what fills it.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradtx
from tests import _runners as r
from tests import _tolerance as h
from tests import reference

from .recipes import dragon_rmsprop, lucid_rmsprop, lucid_rprop

STEPS = 40


def _check(name, kw, prob, ours, step_fn, **extra):
    """``ours`` against the page's NumPy form, within the tolerance that the reference's
    own conditioning allows (its runs with params, then gradients, one ulp up)."""
    theirs = reference.run_per_leaf(step_fn, prob, STEPS, **kw, **extra)
    nudged = [reference.run_per_leaf(step_fn, prob.nudged(n), STEPS, **kw) for n in h.NUDGES]
    h.check_against(name, str(kw), prob.dtypes, ours, theirs, nudged, STEPS)
    return theirs


# ----------------------------------------------------------------------------------------
# Lucid
# ----------------------------------------------------------------------------------------


LUCID_RPROP = [{}, {"lr": 2e-4}, {"etas": (0.4, 1.5), "step_sizes": (1e-4, 0.5)}]


@pytest.mark.parametrize("kw", LUCID_RPROP, ids=str)
def test_lucid_rprop(kw):
    prob = r.small_problem(STEPS)
    ours = r.run_gradtx_eager(lucid_rprop(**kw), prob, STEPS)
    theirs = _check("Lucid Rprop (page: Rprop-)", kw, prob, ours, reference.lucid_rprop_page)
    # and the variant matters: torch's rule (gradtx's default) is another trajectory
    torch_kw = {("learning_rate" if k == "lr" else k): v for k, v in kw.items()}
    torch_rule = r.run_gradtx_eager(gradtx.rprop(**torch_kw), prob, STEPS)
    assert h.scaled_error(torch_rule, theirs) > 1e-3


LUCID_RMSPROP = [
    {},
    {"weight_decay": 0.1},
    {"momentum": 0.9},
    {"centered": True, "eps": 1e-4},
    {"lr": 1e-3, "alpha": 0.9, "weight_decay": 0.01, "momentum": 0.5, "centered": True},
]


@pytest.mark.parametrize("kw", LUCID_RMSPROP, ids=str)
def test_lucid_rmsprop(kw):
    prob = r.small_problem(STEPS)
    ours = r.run_gradtx_eager(lucid_rmsprop(**kw), prob, STEPS)
    _check("Lucid RMSprop", kw, prob, ours, reference.lucid_rmsprop_page)


# ----------------------------------------------------------------------------------------
# Dragon
# ----------------------------------------------------------------------------------------


DRAGON = [
    {},
    {"momentum": 0.9},
    {"scale": 0.5, "clip_norm": 5.0},
    {
        "lr": 1e-3,
        "alpha": 0.9,
        "eps": 1e-7,
        "weight_decay": 0.01,
        "momentum": 0.5,
        "scale": 2.0,
        "clip_norm": 10.0,
    },
]


@pytest.mark.parametrize("kw", DRAGON, ids=str)
def test_dragon_rmsprop(kw):
    prob = r.small_problem(STEPS)
    clipped = []
    ours = r.run_gradtx_eager(dragon_rmsprop(**kw), prob, STEPS)
    _check("Dragon RMSprop", kw, prob, ours, reference.dragon_rmsprop_page, clipped=clipped)
    if kw.get("clip_norm"):
        assert len(clipped) > STEPS, "the clip must act on some steps, for the test to bite"


def test_dragon_lr_is_inside_the_buffer():
    """With momentum, Dragon's buffer holds lr-scaled steps: after a change of lr, the
    old steps keep their old lr (torch's buffer would rescale them by the new one). The
    chain does the same: lr is halved after one step by continuing the first chain's
    state with a second chain of the same layout."""
    prob = r.small_problem(4)
    p = prob.tree("theta")
    first, second = dragon_rmsprop(lr=0.1, momentum=0.9), dragon_rmsprop(lr=0.05, momentum=0.9)
    g = prob.tree("s")
    g0 = {k: v[0] for k, v in g.items()}
    g1 = {k: v[1] for k, v in g.items()}
    u0, s = first.update(g0, first.init(p), p)
    u1, _ = second.update(g1, s, p)
    # NumPy, from the page: m1 = 0.9 * m0 + 0.05 * g1 / (sqrt(v1) + eps), m0 = 0.1 * g0 / ...
    for k in g0:
        g0k, g1k = np.asarray(g0[k], np.float64), np.asarray(g1[k], np.float64)
        v0 = 0.01 * g0k**2
        v1 = 0.99 * v0 + 0.01 * g1k**2
        m0 = 0.1 * g0k / (np.sqrt(v0) + 1e-8)
        m1 = 0.9 * m0 + 0.05 * g1k / (np.sqrt(v1) + 1e-8)
        np.testing.assert_allclose(np.asarray(u0[k]), -m0, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(u1[k]), -m1, rtol=1e-5)
