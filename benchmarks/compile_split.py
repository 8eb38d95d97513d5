"""Compile time of a many-leaf donated step, split into trace, lowering and XLA compile.

Every donated JAX member of every family (each Rprop variant included), on the same
tree of ``--leaves`` leaves, is traced (``jax.jit(step).trace``), lowered to StableHLO
and compiled by XLA, in interleaved rounds within one process: round r compiles every
member once, in a rotated order, so that a change of machine load hits all of them.
Medians and the run's spread (min-max) per stage, and the ratio to optax's member of the
same family::

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

from benchmarks import contenders

STAGES = ("trace", "lower", "compile")


def _members(families):
    for family in families:
        for m in contenders.FAMILIES[family]():
            if m.library in ("gradtx", "optax") and m.mode == "donated":
                yield m


def _time_stages(member, params, grads) -> dict[str, float]:
    runner = member.make(params, grads)
    args = (runner.params, runner.state, runner.grads, runner.loss)
    fresh = jax.jit(runner.jitted.__wrapped__, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    traced = fresh.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    return {"trace": t1 - t0, "lower": t2 - t1, "compile": t3 - t2}


def run(n_leaves: int, leaf_size: int, rounds: int, families) -> dict[str, dict[str, list]]:
    params = [jnp.full((leaf_size,), 0.5, jnp.float32) + i for i in range(n_leaves)]
    grads = [jnp.full((leaf_size,), 1e-3, jnp.float32) * (i % 7 - 3) for i in range(n_leaves)]
    members = list(_members(families))
    times: dict[str, dict[str, list]] = {
        m.family + "|" + m.name: {s: [] for s in STAGES} for m in members
    }
    for r in range(rounds):
        order = members[r % len(members) :] + members[: r % len(members)]
        for m in order:
            for stage, seconds in _time_stages(m, params, grads).items():
                times[m.family + "|" + m.name][stage].append(seconds)
            gc.collect()
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def table(times: dict[str, dict[str, list]]) -> str:
    def med(key, stage):
        return statistics.median(times[key][stage])

    def total(key):
        return statistics.median(
            [sum(times[key][s][i] for s in STAGES) for i in range(len(times[key]["trace"]))]
        )

    head = (
        "| family | contender | trace s | lower s | XLA compile s | total s (min-max) "
        "| total / optax |\n|---|---|---:|---:|---:|---:|---:|\n"
    )
    body = ""
    for key in times:
        family, name = key.split("|")
        optax_key = next((k for k in times if k.startswith(family + "|optax")), None)
        totals = [sum(times[key][s][i] for s in STAGES) for i in range(len(times[key]["trace"]))]
        ratio = total(key) / total(optax_key) if optax_key else None
        body += (
            f"| {family} | {name} | {med(key, 'trace'):.3f} | {med(key, 'lower'):.3f} "
            f"| {med(key, 'compile'):.3f} | {total(key):.2f} ({min(totals):.2f}-{max(totals):.2f}) "
            f"| {'–' if ratio is None else format(ratio, '.2f')} |\n"
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
    print(table(run(args.leaves, args.leaf_size, args.rounds, args.families)))


if __name__ == "__main__":
    main()
