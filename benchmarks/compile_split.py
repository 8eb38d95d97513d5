"""Compile time of a many-leaf donated step, split into trace, lowering and XLA compile.

Every donated JAX member of every family (each Rprop variant included), on the same
tree of ``--leaves`` leaves, is traced (``jax.jit(step).trace``), lowered to StableHLO
and compiled by XLA, in interleaved rounds within one process: round r compiles every
member once, in a rotated order, so that a change of machine load hits all of them.
Medians and the run's spread (min-max) per stage; the ratio to optax's member of the
same family, as the median over rounds of the round's ratio; and the compiled module's
instructions per leaf (fusions' bodies included), which XLA's compile time grows with::

    python -m benchmarks.compile_split                     # 1,000 leaves, 5 rounds
    python -m benchmarks.compile_split --leaves 200 --rounds 3

Each round builds a fresh ``jax.jit`` (nothing is cached between rounds: the tracing
and compilation caches are keyed on the function object, and XLA's persistent cache is
off unless configured).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import jax
import jax.numpy as jnp

from benchmarks import contenders, hlo
from benchmarks.stats import round_ratios

STAGES = ("trace", "lower", "compile")


def _members(families):
    for family in families:
        for m in contenders.FAMILIES[family]():
            if m.library in ("gradtx", "optax") and m.mode == "donated":
                yield m


def _time_stages(member, params, grads) -> tuple[dict[str, float], int]:
    runner = member.make(params, grads)
    args = (runner.params, runner.state, runner.grads, runner.loss)
    fresh = jax.jit(runner.jitted.__wrapped__, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    traced = fresh.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    seconds = {"trace": t1 - t0, "lower": t2 - t1, "compile": t3 - t2}
    return seconds, hlo.instructions(compiled.as_text())


def run(n_leaves: int, leaf_size: int, rounds: int, families) -> dict[str, dict]:
    params = [jnp.full((leaf_size,), 0.5, jnp.float32) + i for i in range(n_leaves)]
    grads = [jnp.full((leaf_size,), 1e-3, jnp.float32) * (i % 7 - 3) for i in range(n_leaves)]
    members = list(_members(families))
    times: dict[str, dict] = {m.family + "|" + m.name: {s: [] for s in STAGES} for m in members}
    for r in range(rounds):
        order = members[r % len(members) :] + members[: r % len(members)]
        for m in order:
            seconds, instructions = _time_stages(m, params, grads)
            entry = times[m.family + "|" + m.name]
            for stage in STAGES:
                entry[stage].append(seconds[stage])
            entry["instructions_per_leaf"] = instructions / n_leaves
            gc.collect()
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def summarize(times: dict[str, dict]) -> list[dict]:
    """One row per member: median seconds per stage, the median total with its min-max,
    and instructions per leaf; against optax's member of the same family, the median over
    rounds of the round's ratio (both compiled in that round, so that a change of machine
    load between rounds cancels, as in the race tables) with its min-max, for the total
    and for XLA's compile alone."""
    totals = {key: [sum(x) for x in zip(*(st[s] for s in STAGES))] for key, st in times.items()}
    rows = []
    for key, stages in times.items():
        family, name = key.split("|")
        rows.append(
            {
                "family": family,
                "member": name,
                **{s: statistics.median(stages[s]) for s in STAGES},
                "total": statistics.median(totals[key]),
                "total_min": min(totals[key]),
                "total_max": max(totals[key]),
                "instructions_per_leaf": stages["instructions_per_leaf"],
            }
        )
    for r in rows:
        ref = next((k for k in times if k.startswith(r["family"] + "|optax")), None)
        key = r["family"] + "|" + r["member"]
        r["vs_optax"] = r["compile_vs_optax"] = None
        if ref is not None:
            ratios = round_ratios(totals[key], totals[ref])
            xla = round_ratios(times[key]["compile"], times[ref]["compile"])
            r["vs_optax"], r["vs_optax_min"], r["vs_optax_max"] = (
                statistics.median(ratios),
                min(ratios),
                max(ratios),
            )
            r["compile_vs_optax"] = statistics.median(xla)
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| family | contender | trace s | lower s | XLA compile s | total s [min-max] "
        "| total / optax [min-max] | XLA compile / optax | instructions/leaf |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = ""
    for r in rows:
        ratio = xla = "–"
        if r["vs_optax"] is not None:
            ratio = f"{r['vs_optax']:.2f} [{r['vs_optax_min']:.2f}-{r['vs_optax_max']:.2f}]"
            xla = f"{r['compile_vs_optax']:.2f}"
        body += (
            f"| {r['family']} | {r['member']} | {r['trace']:.3f} | {r['lower']:.3f} "
            f"| {r['compile']:.3f} | {r['total']:.2f} [{r['total_min']:.2f}-{r['total_max']:.2f}] "
            f"| {ratio} | {xla} | {r['instructions_per_leaf']:.1f} |\n"
        )
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", type=int, default=1000)
    ap.add_argument("--leaf-size", type=int, default=1 << 12)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--families", nargs="*", default=list(contenders.FAMILIES))
    args = ap.parse_args()
    print(f"{args.leaves} leaves of {args.leaf_size}, {args.rounds} interleaved rounds")
    print(table(summarize(run(args.leaves, args.leaf_size, args.rounds, args.families))))


if __name__ == "__main__":
    main()
