"""The statistics every table of the suite reports: ratios paired by round, their
quartiles, and a confidence interval of their median.

A contender and its reference run in the same round, so the round's ratio cancels a
change of machine load between rounds; ``run``, ``compile_split`` and ``many_leaves``
all summarise such per-round ratios.
"""

from __future__ import annotations

import statistics

import numpy as np


def round_ratios(ours: list[float], ref: list[float]) -> list[float]:
    """``ours[i] / ref[i]`` for every round i. A contender stopped early (torch's slow
    loops) is paired with the reference's first rounds."""
    return [a / b for a, b in zip(ours, ref)]


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``xs``; one sample gives it thrice."""
    if len(xs) < 2:
        return (xs[0],) * 3
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def paired_ratio(ours: list[float], ref: list[float]) -> tuple[float, float, float]:
    """Quartiles of the per-round ratios (:func:`round_ratios`)."""
    return quartiles(round_ratios(ours, ref))


def median_ci(xs: list[float], level: float = 0.95, resamples: int = 4000) -> tuple[float, float]:
    """A bootstrap confidence interval of the median of ``xs`` (percentile method, a fixed
    seed so that a run's report is reproducible from its samples).

    The interquartile range says how much one round's ratio scatters; this says how well
    the median over all rounds is pinned down, which is what a target on the median is
    judged against: two identical programs give a median near 1.0 whose interval holds
    1.0, and a difference smaller than the interval is not one this run can show."""
    if len(xs) < 2:
        return xs[0], xs[0]
    rng = np.random.default_rng(0)
    meds = np.median(rng.choice(np.asarray(xs), (resamples, len(xs))), axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(meds, [tail, 100 - tail])
    return float(lo), float(hi)
