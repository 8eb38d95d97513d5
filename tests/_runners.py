"""The suite's runners: one torch.optim runner and one gradtx runner, and the shared test
problem of the parity tests.

* :func:`torch_steps` is the one torch loop: every torch comparison (the parity matrix, the
  state bridge, the aliases, param groups, lr schedulers, the Rprop variants) runs through
  it, directly or through :func:`run_torch` (params and gradients as NumPy pytrees).
* :func:`run_gradtx` is the gradtx twin of :func:`run_torch`; :func:`run_gradtx_scan` runs
  a whole :class:`Problem` as one compiled ``lax.scan`` (the parity matrix's hundreds of
  configurations would each compile a step and loop in Python otherwise), and
  :func:`run_gradtx_eager` runs it op by op.

Hooks: ``nudge`` (one of ``_tolerance.NUDGES``) nudges a reference run for the tolerance;
``before_step`` sees the optimizer (or the gradtx state) before each step, e.g. to set a
learning rate; ``capture`` chooses what is recorded after each step (default: the params).

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

import copy
import functools
from typing import Any

import jax
import numpy as np

import gradtx
from tests._tolerance import nudge, precision

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
        :meth:`grad` and :func:`run_torch_problem` hand the reference. ``None``: this problem."""
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


def random_array(rng: np.random.Generator, shape, dtype, scale: float = 1.0) -> jax.Array:
    """Normal draws of ``shape`` times ``scale`` in ``dtype``; for a complex dtype the
    imaginary part is a second draw of the same shape."""
    x = rng.normal(size=shape) * scale
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.normal(size=shape) * scale
    return jax.numpy.asarray(x, dtype)


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


def _grad(theta, a, c, s):
    return a * (theta - c) + s


def run_gradtx_scan(tx: gradtx.GradientTransformation, prob: Problem, steps: int | None = None):
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


def run_gradtx_scan_from(tx, prob: Problem, theta, state, start: int, steps: int):
    """As :func:`run_gradtx_scan`, from ``theta`` and ``state``, at step ``start`` of the
    forcing."""
    return _scan(tx, theta, state, prob.tree("a"), prob.tree("c"), prob.tree("s"), steps, start)


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


# ----------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------


def torch_tensors(leaves):
    import torch

    return [torch.tensor(np.array(x)) for x in leaves]


def torch_steps(opt, tensors, grads_at, steps, *, start=0, before_step=None, capture=None):
    """The torch loop: ``steps`` steps of the optimizer ``opt`` (or ``(opt, scheduler)``;
    the scheduler steps after each optimizer step) over ``tensors`` (a list), from step
    ``start``. ``grads_at(t, tensors)`` gives step ``t``'s gradients (tensors, in order);
    ``before_step(opt, t)`` runs after they are set, before ``opt.step()``;
    ``capture(opt, tensors)`` (default: copies of the params as NumPy) is recorded after
    each step. Returns the list of captures."""
    import torch

    opt, sched = opt if isinstance(opt, tuple) else (opt, None)
    capture = capture or (lambda _, ts: [p.detach().numpy().copy() for p in ts])
    out = []
    for t in range(start, start + steps):
        with torch.no_grad():
            for p, g in zip(tensors, grads_at(t, tensors), strict=True):
                p.grad = g
        if before_step is not None:
            before_step(opt, t)
        opt.step()
        if sched is not None:
            sched.step()
        out.append(capture(opt, tensors))
    return out


def torch_optimizer(opt_cls, **kwargs):
    """``make_opt`` for :func:`run_torch`: ``opt_cls`` over all the params, one group."""
    return lambda tensors: opt_cls(jax.tree.leaves(tensors), **kwargs)


def run_torch(make_opt, params, grad_fn, steps, *, nudge=None, before_step=None, capture=None):
    """torch from NumPy pytrees: ``make_opt(tensors)`` (a pytree of tensors shaped like
    ``params``, for param groups by name) returns the optimizer, or ``(optimizer,
    scheduler)``; ``grad_fn(params, t)`` gives the gradients (a NumPy pytree, cast to each
    param's dtype) at the current params on step ``t``. ``nudge`` (``_tolerance.NUDGES``):
    torch starts from params, or gets every gradient, one ulp up. Returns the params (as
    NumPy pytrees) after each step, or what ``capture(opt, tensors)`` records."""
    import torch

    from tests._tolerance import nudge as up

    leaves, treedef = jax.tree.flatten(up(params) if nudge == "params" else params)
    tensors = [torch.tensor(np.array(x), requires_grad=True) for x in leaves]

    def grads_at(t, ts):
        current = treedef.unflatten([p.detach().numpy().copy() for p in ts])
        grads = jax.tree.leaves(grad_fn(current, t))
        grads = [np.asarray(g, p.detach().numpy().dtype) for g, p in zip(grads, ts)]
        return [torch.tensor(up(g) if nudge == "grads" else g) for g in grads]

    if capture is None:
        capture = lambda _, ts: treedef.unflatten([p.detach().numpy().copy() for p in ts])  # noqa: E731
    opt = make_opt(treedef.unflatten(tensors))
    return torch_steps(opt, tensors, grads_at, steps, before_step=before_step, capture=capture)


def run_torch_problem(optimizer, params, prob: Problem, start: int, steps: int, stats=None):
    """:func:`torch_steps` on a :class:`Problem`: ``steps`` steps of ``optimizer`` over
    ``params`` (tensors in leaf order), forcing from step ``start``, gradients computed in
    torch. Returns the list over steps of lists of param arrays.

    ``stats``, if a dict, receives for Rprop: ``hit_min``/``hit_max`` (a step size sat at
    a bound after some step) and ``flips`` (elements whose gradient changed sign against
    the stored previous gradient).
    """
    import torch

    a = torch_tensors(prob.leaves["a"])
    c = torch_tensors(prob.leaves["c"])
    # the whole forcing as tensors once (step t's is a view), not a copy per leaf and step
    s = [torch.from_numpy(x) for x in prob.leaves["s"]]
    group = optimizer.param_groups[0]
    rprop_stats = stats is not None and "step_sizes" in group

    def grads_at(t, ps):
        out = []
        for i, p in enumerate(ps):
            g = _grad(p.detach(), a[i], c[i], s[i][t])
            out.append(torch.from_numpy(nudge(g.numpy())) if prob.nudge_grads else g)
        return out

    def count_flips(opt, _):
        for p in params:
            st = opt.state.get(p)
            if st and p.numel():
                g, prev = p.grad, st["prev"]
                if p.is_complex():
                    g, prev = torch.view_as_real(g), torch.view_as_real(prev)
                stats["flips"] = stats.get("flips", 0) + int(((g * prev) < 0).sum())

    def capture(opt, ps):
        if rprop_stats:
            lo, hi = group["step_sizes"]
            for p in ps:
                if p.numel():
                    st = opt.state[p]["step_size"]
                    st = torch.view_as_real(st) if st.is_complex() else st
                    stats["hit_min"] = stats.get("hit_min", False) or bool((st == lo).any())
                    stats["hit_max"] = stats.get("hit_max", False) or bool((st == hi).any())
        return [p.detach().numpy().copy() for p in ps]

    before = count_flips if rprop_stats else None
    return torch_steps(
        optimizer, params, grads_at, steps, start=start, before_step=before, capture=capture
    )


# ----------------------------------------------------------------------------------------
# gradtx
# ----------------------------------------------------------------------------------------


def run_gradtx(
    tx,
    params,
    grad_fn,
    steps,
    *,
    jit=True,
    host_grads=False,
    nudge=None,
    before_step=None,
    capture=None,
    value_fn=None,
):
    """The gradtx twin of :func:`run_torch`: ``steps`` updates of ``tx`` from ``params``;
    ``grad_fn(params, t)`` gives the gradients, cast to each param's dtype: traced inside
    the (jitted) step, or with ``host_grads`` called on the host between steps (NumPy
    code). ``before_step(state, t)`` returns the state to step with (e.g. a new injected
    hyperparameter); ``value_fn(params, t)``, if given, is passed as the update's ``value``
    extra argument (iRprop+). ``nudge`` as for :func:`run_torch`. Returns (the params after
    each step as NumPy pytrees, or what ``capture(params, state)`` records; the final
    state)."""
    from tests._tolerance import nudge as up

    jnp = jax.numpy
    params = jax.tree.map(jnp.asarray, up(params) if nudge == "params" else params)

    def grads(p, t):
        g = jax.tree.map(lambda x, q: jnp.asarray(x, q.dtype), grad_fn(p, t), p)
        return up(g) if nudge == "grads" else g

    def step(p, s, t, g, value):
        g = grads(p, t) if g is None else g
        kw = {} if value is None else {"value": value}
        updates, s = tx.update(g, s, p, **kw)
        return gradtx.apply_updates(p, updates), s

    step = jax.jit(step) if jit else step
    state = tx.init(params)
    capture = capture or (lambda p, _: jax.tree.map(np.asarray, p))
    out = []
    for t in range(steps):
        if before_step is not None:
            state = before_step(state, t)
        g = grads(params, t) if host_grads else None
        value = None if value_fn is None else jnp.asarray(value_fn(params, t))
        params, state = step(params, state, jnp.asarray(t), g, value)
        out.append(capture(params, state))
    return out, state
