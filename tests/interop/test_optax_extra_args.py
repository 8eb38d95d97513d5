"""gradtx transforms that need ``value=`` (iRprop+) inside optax's and flax's machinery.

optax forwards extra arguments only to instances of ``optax.GradientTransformationExtraArgs``;
a gradtx transform passes that check (``gradtx._base.GradientTransformation.__class__``)
without gradtx importing optax. Each place is run with real optax/flax objects and
compared, bit for bit, with the same steps run by gradtx alone (the same operations in
the same order: equality, not a tolerance).
"""

import functools
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from flax.training import train_state

import gradtx

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}


def loss_fn(p):
    return jnp.sum((p["w"] - jnp.array([1.0, 2.0, -1.0])) ** 2) + jnp.sin(3 * p["b"]) ** 2


# the problem's loss and gradient, compiled once: every run here (the pure-gradtx numbers
# included) steps on the same values, bit for bit, without an eager trace of the gradient
# (a few dozen dispatches) per step
value_and_grad = jax.jit(jax.value_and_grad(loss_fn))


def run(tx, steps=12, wrap=None):
    """Steps of ``tx`` on ``loss_fn``, passing the loss as ``value=``; ``wrap(tx)`` is the
    transform actually stepped (an optax combinator around ``tx``)."""
    outer = wrap(tx) if wrap else tx
    params, state = PARAMS, outer.init(PARAMS)
    for _ in range(steps):
        loss, grads = value_and_grad(params)
        updates, state = outer.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)
    return params


def irprop_plus():
    return gradtx.rprop(0.05, variant="irprop+")


@functools.cache
def pure_gradtx():
    """``run(irprop_plus())``, the numbers every test here compares with: run once."""
    return run(irprop_plus())


def test_recognised_by_optax_and_still_gradtx():
    tx = irprop_plus()
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert isinstance(tx, gradtx.GradientTransformation)
    assert type(tx) is gradtx.GradientTransformation
    assert optax.with_extra_args_support(tx) is tx
    assert gradtx.GradientTransformationExtraArgs is gradtx.GradientTransformation


def test_hand_built_pair_without_kwargs_is_a_plain_optax_transform():
    tx = gradtx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    assert not isinstance(tx, optax.GradientTransformationExtraArgs)
    assert isinstance(tx, optax.GradientTransformation)
    updates, _ = optax.chain(tx).update(PARAMS, ((),), PARAMS, value=1.0)  # args dropped
    chex.assert_trees_all_equal(updates, PARAMS)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda tx: optax.chain(tx), id="optax.chain"),
        pytest.param(lambda tx: optax.named_chain(("rprop", tx)), id="optax.named_chain"),
        pytest.param(lambda tx: optax.MultiSteps(tx, every_k_schedule=1), id="optax.MultiSteps"),
        pytest.param(
            lambda tx: optax.inject_hyperparams(lambda lr: tx)(lr=0.1),
            id="optax.inject_hyperparams",
        ),
    ],
)
def test_irprop_plus_inside_optax_matches_pure_gradtx(wrap):
    chex.assert_trees_all_equal(run(irprop_plus(), wrap=wrap), pure_gradtx())


def test_optax_inject_hyperparams_of_gradtx_factory():
    """optax.inject_hyperparams(gradtx.rprop) builds gradtx.rprop inside its update."""
    tx = optax.inject_hyperparams(gradtx.rprop, static_args=("variant",))(
        learning_rate=0.05, variant="irprop+"
    )
    chex.assert_trees_all_equal(run(tx), pure_gradtx())


def test_optax_multisteps_accumulating_matches_gradtx_multisteps():
    ours = run(irprop_plus(), wrap=lambda tx: gradtx.MultiSteps(tx, 3))
    theirs = run(irprop_plus(), wrap=lambda tx: optax.MultiSteps(tx, 3))
    # optax keeps a running mean, gradtx a sum divided once: equal to rounding
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6)  # local tolerance: a few ulp


def test_flax_train_state_with_tx_update_as_the_error_says():
    """flax's apply_gradients passes nothing to tx.update: the error names the fix, and
    the fix (the two lines it spells out) gives the pure-gradtx numbers."""
    tx = irprop_plus()
    state = train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=tx)
    grads = value_and_grad(PARAMS)[1]
    with pytest.raises(TypeError, match=r"TrainState.apply_gradients passes nothing"):
        state.apply_gradients(grads=grads)
    for _ in range(12):
        loss, grads = value_and_grad(state.params)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params, value=loss)
        state = state.replace(
            step=state.step + 1,
            params=gradtx.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
    chex.assert_trees_all_equal(state.params, pure_gradtx())


def test_gradtx_does_not_import_optax():
    code = "import sys, gradtx; tx = gradtx.rprop(); print('optax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
