"""Trees for the two-process checkpoint tests: built the same way (deterministically) in
pytest's process and in a child process, so that a checkpoint written by one is
restored by the other and compared bit for bit. Run as a script:

    python -m tests._ckpt_cases save FOLDER     # write every case to FOLDER
    python -m tests._ckpt_cases restore FOLDER  # restore every case and compare
    python -m tests._ckpt_cases exchange IN OUT # both, in one process: restore and
                                                # compare IN, then write OUT

``exchange`` prints one line per direction (``restore: ok N`` or ``restore: FAILED``
and the traceback, then ``save: ...``), each done whatever the other did, so the test of
each direction can report its own failure.

Also the one compiled step of every case that the resume tests (``test_checkpoint``,
``interop/test_orbax``) run their cases with: ``step_all`` and ``run``.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state

import gradtx

jax.config.update("jax_enable_x64", True)  # as pytest's conftest sets it


class Holder(eqx.Module):
    """An equinox module holding params, an optimizer state and (static) the transform:
    its static field is a tuple of closures, whose repr differs in every process."""

    params: dict
    opt_state: Any
    tx: Any = eqx.field(static=True)


def _params() -> dict:
    w = np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    return {"dense": {"kernel": jnp.asarray(w), "bias": jnp.asarray([0.1, -0.2, 0.3, 0.0])}}


def _grads(t: int, p: dict) -> dict:
    return jax.tree.map(lambda x: jnp.sin(3.0 * x + t).astype(x.dtype), p)


def _run(tx, steps: int = 2, value: bool = False):
    p, s = _params(), tx.init(_params())
    for t in range(steps):
        extra = {"value": jnp.float32(1.0 / (t + 1))} if value else {}  # a falling loss
        u, s = tx.update(_grads(t, p), s, p, **extra)
        p = gradtx.apply_updates(p, u)
    return p, s


def _with_key(learning_rate, key):
    del key  # carried as a hyperparameter only
    return gradtx.rmsprop(learning_rate)


ALIASES = {
    **{
        f"rprop_{v}": (lambda v=v: gradtx.rprop(1e-2, variant=v))
        for v in ("irprop-", "rprop-", "rprop+", "irprop+")
    },
    "rmsprop": lambda: gradtx.rmsprop(1e-2),
    "rmsprop_full": lambda: gradtx.rmsprop(
        1e-2, weight_decay=1e-2, momentum=0.9, centered=True, maximize=True
    ),
    "inject_with_key": lambda: gradtx.inject_hyperparams(_with_key)(
        learning_rate=1e-2, key=jax.random.key(3)
    ),
}


@functools.cache
def cases() -> dict[str, Any]:
    """Every case, built once per process (the trees are immutable)."""
    out = {}
    for name, make in ALIASES.items():
        p, s = _run(make(), value=name.endswith("+"))
        out[name] = {"params": p, "opt_state": s, "rng": jax.random.key(7)}
    tx = gradtx.rmsprop(1e-2, momentum=0.9)
    ts = train_state.TrainState.create(
        apply_fn=lambda variables, x: x @ variables["params"]["dense"]["kernel"],
        params=_params(),
        tx=tx,
    )
    out["flax_train_state"] = ts.apply_gradients(grads=_grads(0, ts.params))
    p, s = _run(tx)
    out["equinox_holder"] = {"model": Holder(p, s, tx), "raw_key": jax.random.PRNGKey(5)}
    return out


def like(tree: Any) -> Any:
    return jax.eval_shape(lambda: tree)


def assert_bit_identical(a: Any, b: Any) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), (len(la), len(lb))
    for x, y in zip(la, lb):
        x, y = (v if hasattr(v, "dtype") else np.asarray(v) for v in (x, y))
        assert x.dtype == y.dtype and x.shape == y.shape, (x.dtype, y.dtype)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def step_all(step_one):
    """One jitted step of every case, ``step_one(name, params, state, t)`` each, on a dict
    ``name -> (params, state)``: one program to compile for all the cases, not one each.
    The cases share nothing but the step counter ``t``."""

    def step(runs, t):
        return {name: step_one(name, p, s, t) for name, (p, s) in runs.items()}

    jitted, device = jax.jit(step), jax.devices()[0]
    # Every call's arrays committed to the device, as the step's own outputs are: else the
    # first call (uncommitted arrays from params0, init or a restore) compiles the same
    # step a second time, for uncommitted arguments. The numbers are the same.
    return lambda runs, t: jitted(jax.device_put(runs, device), t)


def run(step, runs, stop: int, steps: int):
    """``runs`` stepped to ``stop``, and on to ``steps``: both, by the same step."""
    for t in range(stop):
        runs = step(runs, t)
    stopped = runs
    for t in range(stop, steps):
        runs = step(runs, t)
    return stopped, runs


def main(action: str, folder: str) -> None:
    todo = cases()
    for name, tree in todo.items():
        path = os.path.join(folder, name + ".npz")
        if action == "save":
            gradtx.save_checkpoint(path, tree)
        else:
            assert_bit_identical(gradtx.restore_checkpoint(path, like(tree)), tree)
    print("ok", len(todo))


def exchange(restore_from: str, save_to: str) -> bool:
    ok = True
    for action, folder in (("restore", restore_from), ("save", save_to)):
        print(action + ": ", end="", flush=True)
        try:
            main(action, folder)
        except Exception:
            print("FAILED\n" + traceback.format_exc(), flush=True)
            ok = False
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "exchange":
        sys.exit(0 if exchange(*sys.argv[2:]) else 1)
    main(*sys.argv[1:])
