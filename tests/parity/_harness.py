"""Shared pieces of the parity tests: the error metric, the tolerance (measured from each
reference's own conditioning), the check and its report, the test problem, and runners
for gradtx (one jitted ``lax.scan`` per configuration) and torch.optim.

The test problem is a time-dependent quadratic, per element

    g_t = a * (theta - c) + s_t,

with ``a`` a power of two (so ``a * (theta - c)`` is exact and every framework computes
bit-identical gradients from identical params, fused multiply-add or not), ``c`` a target
and ``s_t`` a forcing term precomputed in NumPy. Elements are drawn into three roles:

* far targets with a weak forcing: the gradient keeps its sign for the whole run, so
  Rprop's step size grows until it sits at its upper bound;
* a strong forcing alternating every step: the gradient's sign flips every step, so
  Rprop's step size halves until it sits at its lower bound;
* a moderate sinusoidal forcing of random frequency and phase around a near target:
  irregular sign changes.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
from typing import Any

import jax
import numpy as np

import gradtx

# ----------------------------------------------------------------------------------------
# The metric
# ----------------------------------------------------------------------------------------


def precision(dtype: Any) -> str:
    """The real precision of a real or complex dtype, by name: 'float64' for float64 and
    complex128, 'float32' for float32 and complex64, else the dtype's own name ('float16',
    'bfloat16')."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return "float64" if dtype == np.complex128 else "float32"
    return dtype.name


def scaled_error(ours: Any, theirs: Any) -> float:
    """max over steps of max|ours - theirs| / max|theirs|.

    ``ours`` and ``theirs`` are sequences (over steps) of lists of arrays (one per leaf),
    or arrays with a leading step axis. Zero-size leaves contribute nothing.
    """
    worst = 0.0
    for o_step, t_step in zip(ours, theirs, strict=True):
        o_leaves = o_step if isinstance(o_step, list | tuple) else [o_step]
        t_leaves = t_step if isinstance(t_step, list | tuple) else [t_step]
        num = den = 0.0
        for o, t in zip(o_leaves, t_leaves, strict=True):
            o, t = np.asarray(o), np.asarray(t)
            assert o.shape == t.shape, (o.shape, t.shape)
            if o.size == 0:
                continue
            with np.errstate(invalid="ignore"):
                d = np.abs(o.astype(np.complex128) - t.astype(np.complex128))
            if np.isnan(d).any():
                return float("inf")
            num = max(num, float(d.max()))
            den = max(den, float(np.abs(t.astype(np.complex128)).max()))
        if num:
            worst = max(worst, num / max(den, np.finfo(np.float64).tiny))
    return worst


def errors_by_precision(dtypes: list, ours: Any, theirs: Any) -> dict[str, float]:
    """{precision: :func:`scaled_error` over the leaves of that precision}, for sequences
    (over steps) of leaf lists whose leaves have ``dtypes``."""
    out = {}
    for prec in sorted({precision(d) for d in dtypes}):
        idx = [i for i, d in enumerate(dtypes) if precision(d) == prec]
        out[prec] = scaled_error(
            [[o[i] for i in idx] for o in ours], [[t[i] for i in idx] for t in theirs]
        )
    return out


# ----------------------------------------------------------------------------------------
# The tolerance: measured from the reference's own conditioning
# ----------------------------------------------------------------------------------------

FACTOR = 16
"""Tolerance = FACTOR x d_self, where d_self is how far the reference moves against itself
when its inputs are nudged by one ulp (:data:`NUDGES`). Two correct implementations differ
by a few roundings per step where the reference's nudged run differs by about one: torch's
float32 ``sqrt`` is 1 ulp off on ~17% of inputs, ``addcdiv`` rounds ``p + (-lr g)/avg``
where a chain rounds ``p - lr (g/avg)``, Keras divides by ``sqrt`` where gradtx multiplies
by ``rsqrt``, XLA contracts to fused multiply-adds or not depending on the host's ISA, each
worth up to an ulp or two. Measured on all ~520 cases of the suite, natively (AVX-512) and
under ``XLA_FLAGS=--xla_cpu_max_isa=AVX2`` and ``=SSE4_2``, the error never exceeded
3.2 x d_self (centered RMSprop against optax, Lucid and Keras, where v - mu^2 cancels);
16 leaves a factor 5 over that. It stays tight: a wrong eps placement, a missing
centering or bias correction miss by 1e-2 to 2e-1 where the tolerance is loosest, 1e-4
(``test_tolerance.py``)."""

FLOOR_ULPS = 1
"""The floor, FLOOR_ULPS ulps of the precision per step: the bound on how far two correct
implementations drift apart where nothing amplifies a rounding (each step adds at most
about one ulp of the largest param to the difference). On well-conditioned cases it is the
larger term (float32: 2.4e-6 over 20 steps, 1.2e-5 over 100, against measured errors of
1e-7 to 5e-7); it also covers the cases whose nudges get lost (a sign-based Rprop step, a
zero scale), where d_self alone would give a tolerance of 0."""

NUDGES = ("params", "grads")
"""The two nudges every reference runner offers, each one ulp up (toward +inf) in each
leaf's own dtype (:func:`nudge`): ``"params"``, the initial params (how a rounding grows
along the trajectory); ``"grads"``, every gradient the reference receives (how each step's
arithmetic amplifies one: the cancellation of a centered variance ``v - mu^2`` shows here).
A learning-rate nudge would not do: one lr serves float32 and float64 leaves alike, and is
lost entirely where a reference holds it in float32 (Keras, torch's tensor lr)."""


def eps(prec: str) -> float:
    """The machine epsilon (one ulp at 1) of a precision named by :func:`precision`."""
    return float(jax.numpy.finfo(prec).eps)


def ceiling(prec: str) -> float:
    """No tolerance may exceed sqrt(eps): a case that cannot keep half its precision's digits
    is too ill-conditioned to test anything; the suite fails rather than passes vacuously."""
    return eps(prec) ** 0.5


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """A scaled-error tolerance and where it came from."""

    value: float
    d_self: float = 0.0
    floor: float = 0.0

    def __str__(self) -> str:
        if not self.value:
            return "0 (bit for bit)"
        return (
            f"{self.value:.2e} = max({FACTOR} x d_self {self.d_self:.2e}, floor {self.floor:.2e})"
        )


EXACT = Tolerance(0.0)
"""Bit for bit (Rprop against torch)."""


def tolerance(prec: str, steps: int, d_self: float) -> Tolerance:
    """max(FACTOR x d_self, FLOOR_ULPS x steps ulps of ``prec``), asserted <= ceiling(prec).

    ``d_self``: the reference's scaled error against itself nudged (:func:`self_distance`);
    ``steps``: the number of steps over which errors can accumulate."""
    floor = FLOOR_ULPS * steps * eps(prec)
    value = max(FACTOR * d_self, floor)
    assert value <= ceiling(prec), (
        f"{prec}: d_self {d_self:.2e} makes a tolerance of {value:.2e} > {ceiling(prec):.1e}: "
        "too ill-conditioned to test; pick a better conditioned case"
    )
    return Tolerance(value, d_self, floor)


def nudge(tree: Any) -> Any:
    """Every inexact leaf one ulp up (toward +inf) in its own dtype; complex leaves: both
    parts. NumPy leaves stay NumPy, JAX leaves JAX; other leaves are left alone."""
    return jax.tree.map(_nudge_leaf, tree)


def _nudge_leaf(x):
    if not hasattr(x, "dtype") or not jax.numpy.issubdtype(x.dtype, jax.numpy.inexact):
        return x
    y = np.asarray(x)  # in NumPy (ml_dtypes for bfloat16): no XLA kernel to compile
    if y.dtype.kind == "c":
        y = np.asarray(_nudge_leaf(y.real) + 1j * _nudge_leaf(y.imag), y.dtype)
    else:
        y = np.asarray(np.nextafter(y, np.asarray(np.inf, y.dtype)), y.dtype)
    return jax.numpy.asarray(y) if isinstance(x, jax.Array) else y


def self_distance(dtypes: list, theirs: Any, nudged: list) -> dict[str, float]:
    """{precision: d_self}: the largest scaled error of the reference's ``nudged`` runs
    (one per nudge of :data:`NUDGES`) against its plain run ``theirs``."""
    out = collections.defaultdict(float)
    for run in nudged:
        for prec, d in errors_by_precision(dtypes, run, theirs).items():
            out[prec] = max(out[prec], d)
    return out


# ----------------------------------------------------------------------------------------
# The check and the report
# ----------------------------------------------------------------------------------------

REPORT: dict[str, dict[str, Any]] = collections.defaultdict(
    lambda: {"configs": set(), "cases": collections.defaultdict(list)}
)
"""reference -> {"configs": set of config names, "cases": precision -> list of (error,
tolerance, config)}; printed by ``tests/conftest.py`` at the end of the session."""


def record(reference: str, config: str, prec: str, err: float, tol: Tolerance = EXACT) -> None:
    entry = REPORT[reference]
    entry["configs"].add(config)
    entry["cases"][prec].append((err, tol, config))


def check(
    reference: str, config: str, prec: str, err: float, tol: Tolerance, detail: str = ""
) -> None:
    """Record ``err`` and assert it is within ``tol``."""
    record(reference, f"{config}{detail}", prec, err, tol)
    assert err <= tol.value, (
        f"{reference} [{config}{detail}] {prec}: scaled error {err:.3e} > {tol}"
    )


def check_against(
    reference: str,
    config: str,
    dtypes: list,
    ours: Any,
    theirs: Any,
    nudged: list | None,
    steps: int,
    detail: str = "",
) -> None:
    """:func:`check` per precision of trajectories (lists over steps of leaf lists, leaves
    of ``dtypes``), each against the tolerance that the reference's ``nudged`` runs measure;
    ``nudged=None``: bit for bit."""
    d_self = self_distance(dtypes, theirs, nudged or [])
    for prec, err in errors_by_precision(dtypes, ours, theirs).items():
        tol = EXACT if nudged is None else tolerance(prec, steps, d_self[prec])
        check(reference, config, prec, err, tol, detail)


# ----------------------------------------------------------------------------------------
# The test problem
# ----------------------------------------------------------------------------------------

SHAPES = {"scalar": (), "empty": (0, 3), "matrix": (4, 5), "nested": {"a": {"b": (2, 3, 2)}}}
"""The leaf shapes of every (dtype, real/complex) group: a scalar, a zero-size array, a
matrix and a 3-d array two dicts deep. The whole params tree, one such group per dtype,
is a nested dict of mixed shapes and dtypes (16 leaves)."""

GROUPS = {
    "f32": np.float32,
    "f64": np.float64,
    "c64": np.complex64,
    "c128": np.complex128,
}


class Problem:
    """Params, curvatures, targets and forcing, as trees of NumPy arrays.

    ``forcing`` has a leading axis of ``steps``. ``leaves`` gives them flat in
    ``jax.tree_util`` order, the order in which torch receives its tensors.
    """

    def __init__(self, tree_of_dtypes: Any, steps: int, far: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.steps = steps
        shapes, self.treedef = jax.tree.flatten(
            tree_of_dtypes, is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2
        )
        theta, a, c, s = [], [], [], []
        for shape, dtype in shapes:
            cplx = np.dtype(dtype).kind == "c"
            real_shape = (*shape, 2) if cplx else shape
            t = np.arange(steps).reshape((steps,) + (1,) * len(real_shape))
            role = rng.integers(0, 3, real_shape)
            sign = rng.choice([-1.0, 1.0], real_shape)
            theta_ = rng.uniform(-1, 1, real_shape)
            a_ = 2.0 ** rng.integers(-2, 3, real_shape)
            c_ = np.where(role == 0, far * sign, rng.uniform(-1, 1, real_shape))
            amp = np.where(role == 0, 0.1, np.where(role == 1, 100.0 * far, 2.0))
            freq = np.where(role == 1, np.pi, rng.uniform(0.3, 2.5, real_shape))
            phase = np.where(role == 1, 0.0, rng.uniform(0, 2 * np.pi, real_shape))
            s_ = amp * sign * np.cos(freq * t + phase)
            if cplx:
                theta_, c_, s_ = (x[..., 0] + 1j * x[..., 1] for x in (theta_, c_, s_))
                a_ = a_[..., 0]  # one real curvature per complex element
            real = np.float32 if precision(dtype) == "float32" else np.float64
            theta.append(np.asarray(theta_, dtype))
            a.append(np.asarray(a_, real))
            c.append(np.asarray(c_, dtype))
            s.append(np.asarray(s_, dtype))
        self.leaves = dict(theta=theta, a=a, c=c, s=s)
        self.dtypes = [np.dtype(dtype) for _, dtype in shapes]
        self.nudge_grads = False

    def tree(self, name: str) -> Any:
        return self.treedef.unflatten(self.leaves[name])

    def nudged(self, kind: str | None) -> Problem:
        """The problem for a reference's run nudged by ``kind`` (one of :data:`NUDGES`):
        its initial params one ulp up, or (``"grads"``) every gradient that
        :meth:`grad` and :func:`run_torch` hand the reference. ``None``: this problem."""
        if kind is None:
            return self
        new = copy.copy(self)
        new.leaves = dict(self.leaves)
        if kind == "params":
            new.leaves["theta"] = nudge(self.leaves["theta"])
        else:
            assert kind == "grads", kind
            new.nudge_grads = True
        return new

    def grad(self, i: int, theta: np.ndarray, t: int) -> np.ndarray:
        """The gradient of leaf ``i`` at ``theta`` on step ``t``, in NumPy, for references
        that run step by step (one ulp up in a problem nudged by ``"grads"``)."""
        a, c, s = self.leaves["a"][i], self.leaves["c"][i], self.leaves["s"][i][t]
        g = np.asarray(_grad(theta, a, c, s), theta.dtype)
        return nudge(g) if self.nudge_grads else g


def mixed_tree(shapes: Any = None) -> dict:
    """{group: SHAPES with each shape paired with the group's dtype}."""
    shapes = SHAPES if shapes is None else shapes
    return {
        g: jax.tree.map(lambda s, d=d: (s, d), shapes, is_leaf=lambda x: isinstance(x, tuple))
        for g, d in GROUPS.items()
    }


@functools.cache
def problem(kind: str, steps: int) -> Problem:
    """The shared problems: 'rprop' (far targets at 1e4, so that the step size reaches
    its upper bound) and 'rms' (far targets at 3: RMSprop needs no long runs)."""
    far = {"rprop": 1e4, "rms": 3.0}[kind]
    return Problem(mixed_tree(), steps, far)


# ----------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------


def _grad(theta, a, c, s):
    return a * (theta - c) + s


def run_gradtx(tx: gradtx.GradientTransformation, prob: Problem, steps: int | None = None):
    """``steps`` updates of ``tx`` from the problem's start and ``tx.init`` (inside the
    jitted function: an eager ``init`` would compile a small kernel per leaf shape).

    Returns (list over steps of lists of leaves, final params tree, final state).
    """
    steps = prob.steps if steps is None else steps
    return _scan(
        tx, prob.tree("theta"), None, prob.tree("a"), prob.tree("c"), prob.tree("s"), steps
    )


def _scan(tx, theta, state, a, c, s, steps, start=0):
    s = jax.tree.map(lambda x: x[start : start + steps], s)
    traj, p, st = _compiled(tx)(theta, state, a, c, s)
    leaves = [np.asarray(x) for x in jax.tree.leaves(traj)]
    return [[x[t] for x in leaves] for t in range(steps)], p, st


@functools.lru_cache(maxsize=64)
def _compiled(tx):
    """The jitted scan of ``tx`` (cached per transform: a second call with the same
    shapes reuses the compiled code). ``state=None`` starts from ``tx.init(theta)``."""

    @jax.jit
    def go(theta, state, a, c, s):
        if state is None:
            state = tx.init(theta)

        def body(carry, s_t):
            p, st = carry
            g = jax.tree.map(_grad, p, a, c, s_t)
            u, st = tx.update(g, st, p)
            p = gradtx.apply_updates(p, u)
            return (p, st), p

        (p, st), traj = jax.lax.scan(body, (theta, state), s)
        return traj, p, st

    return go


def run_gradtx_from(tx, prob: Problem, theta, state, start: int, steps: int):
    """As :func:`run_gradtx`, from ``theta`` and ``state``, at step ``start`` of the
    forcing."""
    return _scan(tx, theta, state, prob.tree("a"), prob.tree("c"), prob.tree("s"), steps, start)


def torch_tensors(leaves):
    import torch

    return [torch.tensor(np.array(x)) for x in leaves]


def run_torch(optimizer, params, prob: Problem, start: int, steps: int, stats=None):
    """``steps`` steps of a torch optimizer over ``params`` (tensors in leaf order),
    forcing from step ``start``. Returns the list over steps of lists of param arrays.

    ``stats``, if a dict, receives for Rprop: ``hit_min``/``hit_max`` (a step size sat at
    a bound after some step) and ``flips`` (elements whose gradient changed sign against
    the stored previous gradient).
    """
    import torch

    a = torch_tensors(prob.leaves["a"])
    c = torch_tensors(prob.leaves["c"])
    s = prob.leaves["s"]
    out = []
    group = optimizer.param_groups[0]
    for t in range(start, start + steps):
        with torch.no_grad():
            for i, p in enumerate(params):
                p.grad = _grad(p.detach(), a[i], c[i], torch.from_numpy(np.array(s[i][t])))
                if prob.nudge_grads:
                    p.grad = torch.from_numpy(nudge(p.grad.numpy()))
            if stats is not None and "step_sizes" in group:
                for p in params:
                    st = optimizer.state.get(p)
                    if st and p.numel():
                        g, prev = p.grad, st["prev"]
                        if p.is_complex():
                            g, prev = torch.view_as_real(g), torch.view_as_real(prev)
                        flips = int(((g * prev) < 0).sum())
                        stats["flips"] = stats.get("flips", 0) + flips
        optimizer.step()
        if stats is not None and "step_sizes" in group:
            lo, hi = group["step_sizes"]
            for p in params:
                if p.numel():
                    st = optimizer.state[p]["step_size"]
                    st = torch.view_as_real(st) if st.is_complex() else st
                    stats["hit_min"] = stats.get("hit_min", False) or bool((st == lo).any())
                    stats["hit_max"] = stats.get("hit_max", False) or bool((st == hi).any())
        out.append([p.detach().numpy().copy() for p in params])
    return out


def small_problem(steps: int, seed: int = 3) -> Problem:
    """Three real leaves, float32 and float64, for references that run step by step."""
    tree = {"w": ((4, 3), np.float64), "b": ((5,), np.float32), "s": ((), np.float64)}
    return Problem(tree, steps, far=3.0, seed=seed)


def run_gradtx_eager(tx: gradtx.GradientTransformation, prob: Problem, steps: int):
    """``steps`` eager updates of ``tx`` on the problem; list over steps of leaf lists."""
    p = jax.tree.map(jax.numpy.asarray, prob.tree("theta"))
    a, c = prob.tree("a"), prob.tree("c")
    state, out = tx.init(p), []
    for t in range(steps):
        s_t = jax.tree.map(lambda x, t=t: x[t], prob.tree("s"))
        g = jax.tree.map(_grad, p, a, c, s_t)
        u, state = tx.update(g, state, p)
        p = gradtx.apply_updates(p, u)
        out.append([np.asarray(x) for x in jax.tree.leaves(p)])
    return out
