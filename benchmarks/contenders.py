"""The optimizers the suite races, on the same hyperparameters, and how each one steps.

A *family* is one optimizer as the three libraries spell it (``rmsprop``: gradtx.rmsprop,
optax.rmsprop, torch.optim.RMSprop). Every member of a family is wrapped in a *runner*
that owns its params, state and gradients and performs one steady-state training step
per ``step()`` call:

* JAX (gradtx, optax): ``jax.jit(step)`` where ``step(params, state, grads, loss)``
  computes the updates *and* applies them, with ``donate_argnums=(0, 1)`` (params and
  state updated in place) or without donation (fresh output buffers every call);
* torch: ``opt.step()`` on tensors whose ``.grad`` is set, ``foreach=False`` (a Python
  for-loop over params) or ``foreach=True`` (the multi-tensor kernels).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import gradtx
from benchmarks import hlo

LR = 1e-2
ALPHA = 0.99
EPS = 1e-8
WEIGHT_DECAY = 1e-4
MOMENTUM = 0.9

RPROP_VARIANTS = gradtx.RPROP_VARIANTS


def rprop_variants() -> tuple[str, ...]:
    """The variants this gradtx offers: all four once ``rprop(variant=...)`` exists."""
    if "variant" in inspect.signature(gradtx.rprop).parameters:
        return RPROP_VARIANTS
    return ("irprop-",)


class Member(NamedTuple):
    """One contender: ``make(arrays) -> runner`` for a list of float32 numpy leaves."""

    family: str
    library: str  # gradtx | optax | torch
    label: str  # e.g. "irprop-" for a variant, "" otherwise
    mode: str  # donated | not donated | for-loop | foreach
    make: Callable[[list[np.ndarray], list[np.ndarray]], Any]

    @property
    def name(self) -> str:
        lib = f"{self.library}[{self.label}]" if self.label else self.library
        return f"{lib} {self.mode}"


# --------------------------------------------------------------------------------------
# JAX runners
# --------------------------------------------------------------------------------------


def fresh(tree: Any) -> Any:
    """The same arrays in freshly allocated buffers (see :meth:`JaxRunner.rehome`)."""
    return jax.block_until_ready(jax.tree.map(lambda x: jnp.array(x, copy=True), tree))


class JaxRunner:
    """A jitted train step ``(params, state) <- step(params, state, grads, loss)``."""

    def __init__(
        self, tx, apply_updates, params, grads, donate: bool, needs_value: bool, options=None
    ):
        def step(params, state, grads, loss):
            extra = {"value": loss} if needs_value else {}
            updates, state = tx.update(grads, state, params, **extra)
            return apply_updates(params, updates), state

        self.jitted = jax.jit(
            step, donate_argnums=(0, 1) if donate else (), compiler_options=options
        )
        self.fn = None
        self.params = [jnp.asarray(p) for p in params]
        self.grads = [jnp.asarray(g) for g in grads]
        self.loss = jnp.float32(1.0)
        self.state = tx.init(self.params)
        jax.block_until_ready((self.params, self.state))
        self.n_params = sum(p.size for p in params)
        self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self.state))

    def first_call(self) -> float:
        """Seconds for the first call: trace, lower, compile and run one step.

        The compiled executable is kept and called from then on (its per-call cost is
        that of the jitted function: both take the C++ dispatch path), so its HLO can be
        read without compiling twice."""
        t0 = time.perf_counter()
        self.fn = self.jitted.lower(self.params, self.state, self.grads, self.loss).compile()
        self.step()
        return time.perf_counter() - t0

    def step(self) -> None:
        self.params, self.state = self.fn(self.params, self.state, self.grads, self.loss)
        jax.block_until_ready((self.params, self.state))

    def rehome(self) -> None:
        """Move params, state and gradients into freshly allocated buffers (same values).

        Where an array lands in memory changes a step's speed on CPU: in one race the
        runner whose arrays were allocated first ran 1.2-1.4x slower than one built later
        with the same compiled kernels (and the other way round when the build order was
        reversed). The race therefore re-allocates every JAX runner's arrays, in a fresh
        random order, before each round."""
        self.params, self.state, self.grads = fresh((self.params, self.state, self.grads))

    def hlo_counts(self) -> hlo.Counts:
        return hlo.count(self.fn, self.n_params, len(self.params))


def _jax_member(family, library, label, tx_fn, donate, needs_value=False, options=None) -> Member:
    apply = optax.apply_updates if library == "optax" else gradtx.apply_updates

    def make(params, grads):
        return JaxRunner(tx_fn(), apply, params, grads, donate, needs_value, options)

    mode = "donated" if donate else "not donated"
    return Member(family, library, label, mode + (", region analysis" if options else ""), make)


# --------------------------------------------------------------------------------------
# torch runners
# --------------------------------------------------------------------------------------


class TorchRunner:
    """``opt.step()`` with fixed gradients; torch updates params and state in place."""

    def __init__(self, opt_fn, params, grads):
        self.params = [torch.from_numpy(p.copy()).requires_grad_(True) for p in params]
        for p, g in zip(self.params, grads):
            p.grad = torch.from_numpy(g.copy())
        self.opt = opt_fn(self.params)
        self.n_params = sum(p.size for p in params)
        self.state_bytes = 0

    def first_call(self) -> float:
        t0 = time.perf_counter()
        self.step()
        elapsed = time.perf_counter() - t0
        self.state_bytes = sum(
            t.numel() * t.element_size()
            for s in self.opt.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.dim() > 0
        )
        return elapsed

    def step(self) -> None:
        self.opt.step()

    def hlo_counts(self) -> None:
        return None


def _torch_member(family, label, opt_fn, foreach: bool) -> Member:
    def make(params, grads):
        return TorchRunner(lambda ps: opt_fn(ps, foreach), params, grads)

    return Member(family, "torch", label, "foreach" if foreach else "for-loop", make)


# --------------------------------------------------------------------------------------
# The families
# --------------------------------------------------------------------------------------


def floor_member(family: str) -> Member:
    """Plain SGD (``p - lr * g``, no state) as a donated jitted step: one kernel per
    leaf, 12 B/param, the best any leaf-by-leaf step can do on a workload. Raced with
    every family, it shows how much of a step's time is per-call and per-leaf cost."""
    return _jax_member(family, "floor", "sgd", lambda: gradtx.scale(-LR), True)


def _both_modes(family, library, label, tx_fn, needs_value=False) -> list[Member]:
    return [
        _jax_member(family, library, label, tx_fn, donate, needs_value) for donate in (True, False)
    ]


def _torch_both(family, label, opt_fn) -> list[Member]:
    return [_torch_member(family, label, opt_fn, foreach) for foreach in (False, True)]


def rmsprop_family() -> list[Member]:
    """Plain RMSprop: torch's defaults (alpha 0.99, eps outside the square root)."""
    fam = "rmsprop"
    return (
        _both_modes(fam, "gradtx", "", lambda: gradtx.rmsprop(LR, ALPHA, EPS))
        + _both_modes(
            fam, "optax", "", lambda: optax.rmsprop(LR, decay=ALPHA, eps=EPS, eps_in_sqrt=False)
        )
        + _torch_both(fam, "", lambda ps, fe: torch.optim.RMSprop(ps, LR, ALPHA, EPS, foreach=fe))
    )


def rmsprop_torch_style_family() -> list[Member]:
    """torch-style RMSprop: weight decay, momentum and centering all on."""
    fam = "rmsprop wd+mom+centered"

    def ours():
        return gradtx.rmsprop(LR, ALPHA, EPS, WEIGHT_DECAY, MOMENTUM, centered=True)

    def theirs():
        return optax.chain(
            optax.add_decayed_weights(WEIGHT_DECAY),
            optax.rmsprop(
                LR, decay=ALPHA, eps=EPS, eps_in_sqrt=False, centered=True, momentum=MOMENTUM
            ),
        )

    def torch_opt(ps, fe):
        return torch.optim.RMSprop(
            ps, LR, ALPHA, EPS, WEIGHT_DECAY, MOMENTUM, centered=True, foreach=fe
        )

    return (
        _both_modes(fam, "gradtx", "", ours)
        + _both_modes(fam, "optax", "", theirs)
        + _torch_both(fam, "", torch_opt)
    )


def rprop_family() -> list[Member]:
    """Rprop: every gradtx variant, optax.rprop (its only one) and torch.optim.Rprop
    (iRprop-), with torch's defaults."""
    fam = "rprop"
    members: list[Member] = []
    for i, variant in enumerate(rprop_variants()):
        kwargs = {"variant": variant} if len(rprop_variants()) > 1 else {}
        # every variant donated; the default (torch's) also without donation
        for donate in (True, False) if i == 0 else (True,):
            members.append(
                _jax_member(
                    fam,
                    "gradtx",
                    variant,
                    lambda kw=kwargs: gradtx.rprop(LR, **kw),
                    donate,
                    needs_value=variant == "irprop+",
                )
            )
    members += _both_modes(fam, "optax", "", lambda: optax.rprop(LR))
    members += _torch_both(fam, "irprop-", lambda ps, fe: torch.optim.Rprop(ps, LR, foreach=fe))
    return members


def chain4_family() -> list[Member]:
    """A 4-transform chain (RMS normaliser, Nesterov momentum, decoupled weight decay,
    learning rate), built block by block in both libraries; torch has no counterpart."""
    fam = "chain of 4"

    def ours():
        return gradtx.chain(
            gradtx.scale_by_rms(ALPHA, EPS, eps_in_sqrt=False),
            gradtx.trace(MOMENTUM, nesterov=True),
            gradtx.add_decayed_weights(WEIGHT_DECAY),
            gradtx.scale_by_learning_rate(LR),
        )

    def theirs():
        return optax.chain(
            optax.scale_by_rms(ALPHA, EPS, eps_in_sqrt=False),
            optax.trace(MOMENTUM, nesterov=True),
            optax.add_decayed_weights(WEIGHT_DECAY),
            optax.scale_by_learning_rate(LR),
        )

    return _both_modes(fam, "gradtx", "", ours) + _both_modes(fam, "optax", "", theirs)


FAMILIES = {
    "rmsprop": rmsprop_family,
    "rmsprop-torch-style": rmsprop_torch_style_family,
    "rprop": rprop_family,
    "chain4": chain4_family,
}
