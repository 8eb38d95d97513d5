"""Which optimizer for a full-batch scientific fit? Rprop against Adam and L-BFGS.

Problems (``benchmarks/scientific_problems.py``): a 1D Poisson PINN, a viscous Burgers
PINN (exact solution by Cole-Hopf), Lotka-Volterra parameter estimation (RK4 in
``lax.scan``) and a biexponential curve fit. Contenders, from the same start per seed:

* the four Rprop variants of ``gradtx.rprop`` with torch's defaults (Δ0 = 0.01,
  (η-, η+) = (0.5, 1.2), (Δmin, Δmax) = (1e-6, 50)), and iRprop- with a tuned Δ0;
* ``optax.adam`` with a tuned learning rate;
* ``optax.lbfgs()`` (memory 10, its zoom line search);
* Adam then L-BFGS and iRprop- (tuned Δ0) then L-BFGS, one transform each through
  ``gradtx.join_transforms`` (L-BFGS takes over after a quarter of the steps).

The tuned values (``TUNED``) were picked by hand from short runs on seed 0, not by a
systematic sweep (``--sweep`` prints one over {1e-3, 3e-3, 1e-2, 3e-2, 0.1}). Every run
counts gradient evaluations (one per step; L-BFGS: one per line-search trial, the step's
own value and gradient reused from the line search as ``optax.value_and_grad_from_state``
does) and measures wall time per chunk of steps (compilation excluded). Reported per
problem and dtype: the error (relative L2 of the PINN's u against the exact solution, or
relative distance of the fitted parameters to the least-squares optimum) at the end,
median and quartiles over the seeds, the evaluations and seconds used, and plots of the
error against evaluations and against wall time.

    python benchmarks/scientific.py --quick          # < 3 min on 2 cores
    nice -n 5 python benchmarks/scientific.py        # < 15 min on 2 cores
    python benchmarks/scientific.py --update         # writes benchmarks/results/scientific/

Results go to ``--out`` (default: ``gradtx-scientific`` in the system's temporary
directory); ``--update`` writes the committed ``benchmarks/results/scientific/`` instead.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # float64 runs; float32 runs pass float32 params

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

# this checkout's gradtx and problems, whatever gradtx is installed
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from scientific_problems import PROBLEMS  # noqa: E402

import gradtx  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scientific"
# (problem, dtypes, steps, quick steps)
PLAN = [
    ("poisson", ("float32",), 1000, 200),
    ("burgers", ("float32",), 600, 100),
    ("lotka_volterra", ("float32", "float64"), 300, 100),
    ("biexponential", ("float32", "float64"), 500, 150),
]
# per problem: Adam's learning rate, iRprop-'s Δ0 (picked by hand from short runs on seed 0)
TUNED = {
    "poisson": {"adam": 1e-2, "rprop": 1e-3},
    "burgers": {"adam": 1e-2, "rprop": 1e-3},
    "lotka_volterra": {"adam": 3e-2, "rprop": 0.1},
    "biexponential": {"adam": 3e-2, "rprop": 0.1},
}
CHECKPOINTS = 10


def contenders(problem: str, steps: int) -> dict[str, tuple[object, bool]]:
    """name -> (transform, uses L-BFGS)."""
    tuned = TUNED[problem]
    handoff = steps // 4
    out = {f"{v} (torch defaults)": (gradtx.rprop(variant=v), False) for v in gradtx.RPROP_VARIANTS}
    out[f"irprop- Δ0={tuned['rprop']:g}"] = (gradtx.rprop(tuned["rprop"]), False)
    out[f"adam lr={tuned['adam']:g}"] = (optax.adam(tuned["adam"]), False)
    out["lbfgs"] = (optax.lbfgs(), True)
    out["adam -> lbfgs"] = (
        gradtx.join_transforms([optax.adam(tuned["adam"]), optax.lbfgs()], [handoff]),
        True,
    )
    out["irprop- -> lbfgs"] = (
        gradtx.join_transforms([gradtx.rprop(tuned["rprop"]), optax.lbfgs()], [handoff]),
        True,
    )
    return out


def make_chunk(loss, tx, uses_lbfgs, length):
    """A jitted function running ``length`` steps; returns the new carry."""
    from_state = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        params, state, evals = carry
        if uses_lbfgs:
            stored = optax.tree.get(state, "value")
            evals = evals + jnp.where(jnp.isfinite(stored), 0, 1)
            value, grad = from_state(params, state=state)
        else:
            value, grad = jax.value_and_grad(loss)(params)
            evals = evals + 1
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        params = gradtx.apply_updates(params, updates)
        if uses_lbfgs:
            # the line search's trials, each one value and gradient (0 before L-BFGS runs)
            evals = evals + optax.tree.get(state, "num_linesearch_steps")
        return (params, state, evals), None

    def chunk(params, state, evals):
        return jax.lax.scan(step, (params, state, evals), None, length=length)[0]

    return jax.jit(chunk)


def run_one(problem, tx, uses_lbfgs, dtype, seeds, steps):
    """Error, loss, evaluations and seconds at each checkpoint, for every seed."""
    chunk_len = steps // CHECKPOINTS
    chunk = make_chunk(problem.loss, tx, uses_lbfgs, chunk_len)
    error, loss = jax.jit(problem.error), jax.jit(problem.loss)
    rows = {"error": [], "loss": [], "evals": [], "seconds": []}
    compile_s = None
    for seed in seeds:
        params = problem.init(seed, dtype)
        # optax's initial states hold weak-typed scalars that its first update makes
        # strong: typed strong from the start, the chunk compiles once (not inside a timing)
        state = jax.tree.map(lambda x: jnp.asarray(x, x.dtype), tx.init(params))
        evals = jnp.zeros([], jnp.int64)
        if compile_s is None:
            t0 = time.perf_counter()
            chunk.lower(params, state, evals).compile()
            compile_s = time.perf_counter() - t0
        e, f, n, s, elapsed = [float(error(params))], [float(loss(params))], [0], [0.0], 0.0
        for _ in range(CHECKPOINTS):
            t0 = time.perf_counter()
            params, state, evals = jax.block_until_ready(chunk(params, state, evals))
            elapsed += time.perf_counter() - t0
            e.append(float(error(params)))
            f.append(float(loss(params)))
            n.append(int(evals))
            s.append(elapsed)
        for key, values in zip(rows, (e, f, n, s)):
            rows[key].append(values)
    return {k: np.asarray(v, float) for k, v in rows.items()}, compile_s


def _quartiles(x):
    x = np.where(np.isfinite(x), x, np.inf)
    return np.percentile(x, [25, 50, 75], axis=0)


def _fmt(x):
    return "nan" if not np.isfinite(x) else f"{x:.2e}"


# the error a fit must reach for the "evals to target" column (checked at the checkpoints)
TARGETS = {"poisson": 1e-3, "burgers": 0.3, "lotka_volterra": 1e-3, "biexponential": 1e-5}


def _to_target(r, target):
    """Median over seeds of the evaluations and seconds at the first checkpoint whose error
    is <= target (inf for a seed that never gets there)."""
    hit = np.where(np.isfinite(r["error"]), r["error"], np.inf) <= target
    first = np.where(hit.any(1), hit.argmax(1), -1)
    evals = [r["evals"][i, j] if j >= 0 else np.inf for i, j in enumerate(first)]
    secs = [r["seconds"][i, j] if j >= 0 else np.inf for i, j in enumerate(first)]
    return np.median(evals), np.median(secs)


def table(results, error_name, target):
    lines = [
        f"| optimizer | final {error_name}: median [q1, q3] | best of run (median) "
        f"| final loss (median) | evals to {target:g} | s to {target:g} | grad evals "
        "| seconds | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (r, compile_s) in results.items():
        q1, med, q3 = _quartiles(r["error"][:, -1])
        best = np.median(np.nanmin(np.where(np.isfinite(r["error"]), r["error"], np.inf), 1))
        n_hit, s_hit = _to_target(r, target)
        hit = f"{n_hit:.0f} | {s_hit:.2f}" if np.isfinite(n_hit) else "not reached | –"
        lines.append(
            f"| {name} | {_fmt(med)} [{_fmt(q1)}, {_fmt(q3)}] | {_fmt(best)} "
            f"| {_fmt(np.median(r['loss'][:, -1]))} | {hit} "
            f"| {np.median(r['evals'][:, -1]):.0f} "
            f"| {np.median(r['seconds'][:, -1]):.2f} | {compile_s:.1f} |"
        )
    return "\n".join(lines)


def plot(results, title, error_name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, (name, (r, _)) in enumerate(results.items()):
        style = "-" if "lbfgs" in name or "adam" in name else "--"
        color = plt.cm.tab10(i % 10)
        q1, med, q3 = _quartiles(r["error"])
        for ax, key in zip(axes, ("evals", "seconds")):
            x = np.median(r[key], 0)[1:]  # from the first checkpoint: log axes
            ax.plot(x, med[1:], style, color=color, label=name)
            ax.fill_between(x, q1[1:], q3[1:], color=color, alpha=0.12)
    for ax, label in zip(axes, ("gradient evaluations", "wall time (s, compile excluded)")):
        ax.set_xlabel(label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{error_name} (median, quartile band)")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


ERROR_NAMES = {
    "poisson": "rel. L2 of u",
    "burgers": "rel. L2 of u",
    "lotka_volterra": "rel. error of (a,b,c,d)",
    "biexponential": "rel. error of (a1,k1,a2,k2)",
}


def section(name, dtype, results, steps, out):
    """The markdown section of one problem and dtype; saves its plot beside it."""
    seeds = len(next(iter(results.values()))[0]["error"])
    png = f"{name}_{dtype}.png"
    title = f"{name}, {dtype}, {seeds} seeds, {steps} steps"
    plot(results, title, ERROR_NAMES[name], out / png)
    body = table(results, ERROR_NAMES[name], TARGETS[name])
    return f"### {title}\n\n{body}\n\n![{title}]({png})\n"


def replot(out: Path) -> None:
    """Rebuild the tables and plots of ``out`` from its scientific.json (no runs)."""
    saved = json.loads((out / "scientific.json").read_text())
    old = (out / "scientific.md").read_text()
    sections = []
    for key, runs in saved["runs"].items():
        name, dtype = key.split("/")
        results = {
            label: (
                {m: np.asarray(v, float) for m, v in r.items() if m != "compile_s"},
                r["compile_s"],
            )
            for label, r in runs.items()
        }
        steps = next(s for n, _, s, q in PLAN if n == name)
        if saved.get("quick"):
            steps = next(q for n, _, s, q in PLAN if n == name)
        sections.append(section(name, dtype, results, steps, out))
    header = old[: old.index("### ")]
    (out / "scientific.md").write_text(header + "\n".join(sections))


def sweep(seed_steps: int) -> None:
    """Print the final error of Adam (lr) and iRprop- (Δ0) over the grid, seed 0."""
    for name, dtypes, _, _ in PLAN:
        problem = PROBLEMS[name]()
        for value in (1e-3, 3e-3, 1e-2, 3e-2, 0.1):
            for label, tx in (("adam", optax.adam(value)), ("rprop", gradtx.rprop(value))):
                r, _ = run_one(problem, tx, False, dtypes[0], [0], seed_steps)
                print(f"{name} {label} {value:g}: {r['error'][0, -1]:.3e}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, fewer steps")
    parser.add_argument("--seeds", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "gradtx-scientific"
    )
    parser.add_argument("--update", action="store_true", help="write " + str(RESULTS))
    parser.add_argument("--only", default=None, help="comma-separated problem names")
    parser.add_argument("--sweep", action="store_true", help="print the tuning sweep")
    parser.add_argument("--replot", type=Path, default=None, help="redraw a results dir")
    args = parser.parse_args(argv)
    if args.replot:
        replot(args.replot)
        return
    if args.sweep:
        sweep(300)
        return
    out = RESULTS if args.update else args.out
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    start = time.perf_counter()
    sections, record = [], {}
    for name, dtypes, steps, quick_steps in PLAN:
        if args.only and name not in args.only.split(","):
            continue
        steps = quick_steps if args.quick else steps
        problem = PROBLEMS[name]()
        for dtype in dtypes:
            results = {}
            for label, (tx, uses_lbfgs) in contenders(name, steps).items():
                results[label] = run_one(problem, tx, uses_lbfgs, jnp.dtype(dtype), seeds, steps)
                print(
                    f"{name} {dtype} {label}: {np.median(results[label][0]['error'][:, -1]):.3e}"
                    f" ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
            sections.append(section(name, dtype, results, steps, out))
            record[f"{name}/{dtype}"] = {
                k: {m: v.tolist() for m, v in r.items()} | {"compile_s": c}
                for k, (r, c) in results.items()
            }
    wall = time.perf_counter() - start
    header = (
        f"# Full-batch scientific fits: Rprop, Adam, L-BFGS\n\n"
        f"`python benchmarks/scientific.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" — {len(seeds)} seeds, wall time {wall / 60:.1f} min, jax {jax.__version__}, "
        f"optax {optax.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs. Tuned values: {json.dumps(TUNED)}.\n"
    )
    (out / "scientific.md").write_text(header + "\n" + "\n".join(sections))
    (out / "scientific.json").write_text(
        json.dumps({"wall_s": wall, "quick": args.quick, "runs": record})
    )
    print(f"\nwrote {out}/scientific.md ({wall:.0f} s)")


if __name__ == "__main__":
    main()
