"""Which Rprop? The four variants of gradtx against torch.optim.Rprop and optax.rprop.

Full-batch training (as Rprop is meant to be used) of small tanh/sigmoid MLPs on:

* breast-cancer (scikit-learn, 569 x 30, binary): 30-16-1, mean logistic loss;
* digits (scikit-learn, 1797 x 64, 10 classes): 64-16-10, mean softmax cross-entropy;
* diabetes (scikit-learn, 442 x 10, regression, standardised target): 10-32-1, mean squared error;
* the 10-5-10 encoder (Riedmiller & Braun 1993's benchmark): sigmoid units, mean squared error;

from the same initial weights per seed for every optimizer (``--seeds``, default 20), all
with torch's defaults: Δ0 = lr = 0.01, (η-, η+) = (0.5, 1.2), (Δmin, Δmax) = (1e-6, 50).
For each it reports the gradient evaluations (epochs) needed to reach a stated target
loss (median and quartiles; seeds that never get there count as infinitely slow) and the
final loss, prints a markdown table, and saves it with a plot of the median loss curves::

    pip install -e ".[bench]"
    python benchmarks/rprop_variants.py            # ~2 min on 2 busy CPU cores

Fresh results go to ``--out`` (default: ``gradtx-bench`` in the system's temporary
directory), leaving the checkout clean; ``--update-results`` overwrites the committed
``benchmarks/results/rprop_variants.{md,png}`` instead.

JAX runs are ``jit(vmap(scan))`` over the seeds; torch trains all seeds at once as one
stacked tensor per layer (Rprop is element-wise, so this is exactly per-seed Rprop).
It also prints the optimizer state's bytes per float32 parameter for every contender.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

import gradtx

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = gradtx.RPROP_VARIANTS
CONTENDERS = (*(f"gradtx {v}" for v in VARIANTS), "torch.optim.Rprop", "optax.rprop")
LR = 0.01  # torch's default Δ0; etas and step-size bounds are the common defaults too


# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------


@dataclass
class Problem:
    name: str
    x: np.ndarray  # float32 inputs
    y: np.ndarray  # targets: float32 (bce, mse) or int (ce)
    sizes: tuple[int, ...]  # layer widths, input first
    hidden: str  # "tanh" or "sigmoid"
    loss: str  # "bce" (logits), "ce" (logits), "mse", "mse_sigmoid" (sigmoid outputs)
    target: float  # the loss to reach
    epochs: int
    init_scale: float  # weights ~ U(-s, s)/sqrt(fan_in) (encoder: U(-s, s), as in the paper)


def _standardise(x):
    return ((x - x.mean(0)) / (x.std(0) + 1e-12)).astype(np.float32)


def problems() -> list[Problem]:
    bc, dg, db = load_breast_cancer(), load_digits(), load_diabetes()
    eye = np.eye(10, dtype=np.float32)
    return [
        Problem(
            "breast-cancer", _standardise(bc.data), bc.target.astype(np.float32)[:, None],
            (30, 16, 1), "tanh", "bce", 1e-3, 300, 1.0,
        ),
        Problem(
            "digits", (dg.data / 16.0).astype(np.float32), dg.target.astype(np.int32),
            (64, 16, 10), "tanh", "ce", 1e-3, 300, 1.0,
        ),
        Problem(
            "diabetes (regression)", _standardise(db.data), _standardise(db.target[:, None]),
            (10, 32, 1), "tanh", "mse", 0.15, 500, 1.0,
        ),
        Problem("10-5-10 encoder", eye, eye, (10, 5, 10), "sigmoid", "mse_sigmoid", 1e-3, 300, 1.0),
    ]  # fmt: skip


def init_params(problem: Problem, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    params = []
    for m, n in zip(problem.sizes[:-1], problem.sizes[1:]):
        s = problem.init_scale * (1.0 if problem.loss == "mse_sigmoid" else 1.0 / np.sqrt(m))
        w = rng.uniform(-s, s, (m, n)).astype(np.float32)
        b = (
            rng.uniform(-s, s, n).astype(np.float32)
            if problem.loss == "mse_sigmoid"
            else (np.zeros(n, np.float32))
        )
        params.append((w, b))
    return params


# --------------------------------------------------------------------------------------
# The loss, twice: JAX and torch (same formulas)
# --------------------------------------------------------------------------------------


def jax_loss(problem: Problem):
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    act = jnp.tanh if problem.hidden == "tanh" else jax.nn.sigmoid

    def loss(params):
        h = x
        for w, b in params[:-1]:
            h = act(h @ w + b)
        w, b = params[-1]
        z = h @ w + b
        if problem.loss == "bce":
            return jnp.mean(jax.nn.softplus(z) - y * z)
        if problem.loss == "ce":
            return jnp.mean(
                jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0]
            )
        if problem.loss == "mse_sigmoid":
            z = jax.nn.sigmoid(z)
        return jnp.mean((z - y) ** 2)

    return loss


def torch_loss(problem: Problem):
    """Loss per seed of params stacked along a leading seed axis: shape (seeds,)."""
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    act = torch.tanh if problem.hidden == "tanh" else torch.sigmoid

    def loss(params):
        h = x
        for w, b in params[:-1]:
            h = act(h @ w + b[:, None, :])
        w, b = params[-1]
        z = h @ w + b[:, None, :]
        if problem.loss == "bce":
            return torch.mean(torch.nn.functional.softplus(z) - y * z, dim=(1, 2))
        if problem.loss == "ce":
            picked = torch.gather(z, 2, y.long()[None, :, None].expand(z.shape[0], -1, 1))
            return torch.mean(torch.logsumexp(z, dim=-1) - picked[..., 0], dim=1)
        if problem.loss == "mse_sigmoid":
            z = torch.sigmoid(z)
        return torch.mean((z - y) ** 2, dim=(1, 2))

    return loss


# --------------------------------------------------------------------------------------
# Training: loss curves (seeds, epochs + 1), the loss before each update and the final one
# --------------------------------------------------------------------------------------


def _stacked(problem: Problem, seeds: range):
    inits = [init_params(problem, s) for s in seeds]
    return [
        tuple(np.stack([p[i][j] for p in inits]) for j in range(2)) for i in range(len(inits[0]))
    ]


def train_jax(problem: Problem, tx, seeds: range) -> np.ndarray:
    loss = jax_loss(problem)

    def run(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = tx.update(grads, state, params, value=value)
            return (gradtx.apply_updates(params, updates), state), value

        (params, _), curve = jax.lax.scan(step, (params, tx.init(params)), length=problem.epochs)
        return jnp.append(curve, loss(params))

    stacked = jax.tree.map(jnp.asarray, _stacked(problem, seeds))
    return np.asarray(jax.jit(jax.vmap(run))(stacked))


def train_torch(problem: Problem, seeds: range) -> np.ndarray:
    loss = torch_loss(problem)
    params = [
        tuple(torch.tensor(a, requires_grad=True) for a in layer)
        for layer in _stacked(problem, seeds)
    ]
    flat = [t for layer in params for t in layer]
    opt = torch.optim.Rprop(flat, lr=LR, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0))
    curve = []
    for _ in range(problem.epochs):
        opt.zero_grad()
        per_seed = loss(params)
        per_seed.sum().backward()  # seeds are independent: each gets its own gradient
        opt.step()
        curve.append(per_seed.detach().numpy().copy())
    with torch.no_grad():
        curve.append(loss(params).numpy().copy())
    return np.stack(curve, axis=1)


def optax_rprop():
    """optax.rprop with the same hyperparameters, accepting (and ignoring) value=."""
    tx = optax.rprop(LR, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0)
    return gradtx.GradientTransformation(tx.init, lambda u, s, p=None, **_: tx.update(u, s, p))


def curves(problem: Problem, seeds: range) -> dict[str, np.ndarray]:
    out = {}
    for v in VARIANTS:
        out[f"gradtx {v}"] = train_jax(problem, gradtx.rprop(LR, variant=v), seeds)
    out["torch.optim.Rprop"] = train_torch(problem, seeds)
    out["optax.rprop"] = train_jax(problem, optax_rprop(), seeds)
    return out


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------


def epochs_to_target(curve: np.ndarray, target: float) -> np.ndarray:
    """Per seed: the first t with loss(after t updates) <= target, or inf."""
    hit = curve <= target
    return np.where(hit.any(1), hit.argmax(1), np.inf)


def _fmt_epochs(q):
    return "—" if not np.isfinite(q) else f"{q:.0f}"


def summarise(problem: Problem, results: dict[str, np.ndarray]) -> tuple[list[str], dict]:
    rows, medians = [], {}
    for name, curve in results.items():
        e = epochs_to_target(curve, problem.target)
        q1, med, q3 = np.quantile(e, [0.25, 0.5, 0.75], method="lower")
        f1, fmed, f3 = np.quantile(curve[:, -1], [0.25, 0.5, 0.75])
        medians[name] = (med, fmed)
        rows.append(
            f"| {problem.name} | {name} | {np.isfinite(e).sum()}/{len(e)} | "
            f"**{_fmt_epochs(med)}** [{_fmt_epochs(q1)}, {_fmt_epochs(q3)}] | "
            f"{fmed:.3g} [{f1:.3g}, {f3:.3g}] |"
        )
    return rows, medians


def ranking(medians: dict) -> str:
    """Contenders by median epochs to target, fastest first; equal medians joined by '='."""
    order = sorted(medians, key=lambda k: medians[k][0])
    out = f"{order[0]} ({_fmt_epochs(medians[order[0]][0])})"
    for prev, name in itertools.pairwise(order):
        sep = " = " if medians[name][0] == medians[prev][0] else " < "
        out += f"{sep}{name} ({_fmt_epochs(medians[name][0])})"
    return out


def claim_holds(medians: dict) -> bool:
    """The papers' claim: each improved variant (iRprop+, iRprop-) needs at most as many
    epochs (median) as each original (Rprop+, Rprop-)."""
    m = {k: medians[f"gradtx {k}"][0] for k in VARIANTS}
    return max(m["irprop+"], m["irprop-"]) <= min(m["rprop+"], m["rprop-"])


def state_bytes_table() -> list[str]:
    """Optimizer state bytes per float32 parameter, on the digits MLP (1,210 params)."""
    p = init_params(problems()[1], 0)
    params = jax.tree.map(jnp.asarray, p)
    n = sum(x.size for x in jax.tree.leaves(params))

    def per_param(state):
        return sum(np.asarray(x).nbytes for x in jax.tree.leaves(state)) / n

    rows = []
    for v in VARIANTS:
        state = gradtx.rprop(LR, variant=v).init(params)
        kept = "Δ and sign g' packed (uint32)"
        if v in ("rprop+", "irprop+"):
            kept += ", a pending decrease (uint8), η-, Δmin, Δmax (scalars)"
        kept += ", E_{t-1} (one scalar)" if v == "irprop+" else ""
        rows.append(f'| gradtx `rprop(variant="{v}")` | {kept} | {per_param(state):.4f} |')
    tp = [torch.nn.Parameter(torch.from_numpy(a.copy())) for layer in p for a in layer]
    opt = torch.optim.Rprop(tp)
    for t in tp:
        t.grad = torch.ones_like(t)
    opt.step()
    tb = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values())
    rows.append(f"| torch.optim.Rprop | prev g, step size (float32), step count | {tb / n:.4f} |")
    ostate = optax.rprop(LR).init(params)
    rows.append(
        f"| optax.rprop | step sizes, previous updates (float32) | {per_param(ostate):.4f} |"
    )
    head = [
        f"State bytes per float32 parameter (digits MLP, {n} params; "
        "`sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state)) / n`):",
        "",
        "| optimizer | state | bytes / param |",
        "|---|---|---|",
    ]
    return head + rows


def plot(all_results, probs, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(probs), figsize=(4.2 * len(probs), 3.6))
    styles = {"torch.optim.Rprop": ":", "optax.rprop": "--"}
    for ax, problem in zip(axes, probs):
        for name, curve in all_results[problem.name].items():
            median = np.maximum(np.median(curve, 0), 1e-12)  # a float32 loss can round to 0
            ax.semilogy(median, styles.get(name, "-"), label=name, lw=1.4)
        ax.axhline(problem.target, color="grey", lw=0.8)
        ax.set_title(problem.name)
        ax.set_xlabel("epoch (gradient evaluations)")
    axes[0].set_ylabel(
        f"median loss over {next(iter(all_results.values()))['optax.rprop'].shape[0]} seeds"
    )
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    torch.set_num_threads(1)  # several threads on 2 busy cores spin-wait: 10x slower here
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "gradtx-bench")
    where.add_argument(
        "--update-results", action="store_true", help=f"overwrite the committed {RESULTS}"
    )
    args = parser.parse_args()
    if args.update_results:
        args.out = RESULTS
    seeds = range(args.seeds)
    start = time.perf_counter()
    probs = problems()
    all_results, table, notes = {}, [], []
    for problem in probs:
        t0 = time.perf_counter()
        all_results[problem.name] = results = curves(problem, seeds)
        rows, medians = summarise(problem, results)
        table += rows
        holds = "yes" if claim_holds(medians) else "NO"
        notes.append(
            f"- {problem.name} (target {problem.target}, {problem.epochs} epochs): "
            f"{ranking(medians)}. Improved variants at least as fast as both originals: {holds}."
        )
        print(f"[{problem.name}: {time.perf_counter() - t0:.1f} s]", flush=True)
    elapsed = time.perf_counter() - start
    machine = f"{platform.machine()} {jax.devices()[0].platform.upper()}, {os.cpu_count()} cores"
    md = [
        f"Full-batch training, {args.seeds} seeds, all from the same initial weights per seed; "
        "epochs = gradient evaluations until the loss first reaches the target (median "
        "[quartiles]; — where that quantile never reaches it); final loss after "
        "the last epoch, median [quartiles].",
        "",
        "| problem | optimizer | reached | epochs to target | final loss |",
        "|---|---|---|---|---|",
        *table,
        "",
        "Ranking by median epochs to target:",
        "",
        *notes,
        "",
        *state_bytes_table(),
        "",
        f"Command: `python benchmarks/rprop_variants.py --seeds {args.seeds}`; "
        f"{elapsed:.0f} s on {machine}; jax {jax.__version__}, torch {torch.__version__}, "
        f"optax {optax.__version__}.",
    ]
    text = "\n".join(md)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rprop_variants.md").write_text(text + "\n")
    plot(all_results, probs, args.out / "rprop_variants.png")
    print(f"\nsaved {args.out / 'rprop_variants.md'} and {args.out / 'rprop_variants.png'}")


if __name__ == "__main__":
    main()
