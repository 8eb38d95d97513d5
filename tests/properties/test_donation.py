"""A donated train step updates params and state in place: no second copy of either.

Read from the compiled executable (``jit(step, donate_argnums=(0, 1)).lower(...)
.compile()``): its memory analysis must show every params and state byte aliased from
an input to an output, and no fresh output buffers; its HLO must hold no ``copy`` of an
entry parameter (XLA inserts one where it cannot prove that an in-place write comes
after every read of the old value, which costs a second copy of that buffer and its
traffic on every step). The same step without donation is checked to allocate fresh
outputs, so that the checks can tell the two apart. And a donated step moves no more
memory than optax's on the same work (XLA's bytes accessed and temporary buffer).
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest

import gradtx


def _chain4():
    return gradtx.chain(
        gradtx.scale_by_rms(0.99, eps_in_sqrt=False),
        gradtx.trace(0.9, nesterov=True),
        gradtx.add_decayed_weights(1e-4),
        gradtx.scale_by_learning_rate(1e-2),
    )


# (id, constructor)
TRANSFORMS = [
    ("rmsprop", lambda: gradtx.rmsprop(1e-2)),
    (
        "rmsprop[wd,momentum,centered]",
        lambda: gradtx.rmsprop(1e-2, weight_decay=1e-4, momentum=0.9, centered=True),
    ),
    (
        "chain[rms,nesterov,decay,lr]",
        _chain4,
    ),
    ("stddev[bias_correction]", lambda: gradtx.scale_by_stddev(bias_correction=True)),
    *[
        (f"rprop[{v}]", lambda v=v: gradtx.rprop(1e-2, variant=v))
        for v in ("irprop-", "rprop-", "rprop+", "irprop+")
    ],
]

ROWS = 64
LOSS = jnp.float32(1.0)  # irprop+ reads the loss (value=)


def _tree():
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    return {
        "w": jax.random.normal(k[0], (ROWS, 32), jnp.float32),
        "b": jax.random.normal(k[1], (32,), jnp.float32),
        "z": jax.lax.complex(*jax.random.normal(k[2], (2, 16), jnp.float32)),
    }


def _real_tree():
    return {k: v for k, v in _tree().items() if not jnp.iscomplexobj(v)}


def _compiled(tx, donate, *, tree=_tree, apply=gradtx.apply_updates, **update_kwargs):
    """The compiled step ``params, state, grads -> new params, state`` of ``tx`` on
    ``tree()``, and the bytes of its params and state; ``update_kwargs`` go to
    ``tx.update``."""
    # shapes and dtypes are all the lowering reads: no eager init or random draw runs
    params = jax.eval_shape(tree)
    state = jax.eval_shape(tx.init, params)

    def step(params, state, grads, update_kwargs):
        updates, state = tx.update(grads, state, params, **update_kwargs)
        return apply(params, updates), state

    fn = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    compiled = fn.lower(params, state, params, update_kwargs).compile()
    n_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((params, state)))
    return compiled, n_bytes


def _copied_parameters(hlo_text: str) -> list[str]:
    """Entry-computation instructions that copy an entry parameter that is an array.

    Copies of scalars are left out: iRprop+ stores the loss it is given as its previous
    loss, which XLA copies (4 bytes) into the donated buffer of the old one."""
    entry = hlo_text[hlo_text.index("\nENTRY ") :]
    entry = entry[: entry.index("\n}")]
    params = set(re.findall(r"(%\S+) = \S+ parameter\(", entry))
    copies = re.findall(r"= \w+\[([^]]*)\]\S* copy\((%[^)\s,]+)\)", entry)
    return [c for shape, c in copies if c in params and shape]


@pytest.mark.parametrize("name,make", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_donated_step_has_no_second_copy(name, make):
    compiled, n_bytes = _compiled(make(), donate=True, value=LOSS)
    mem = compiled.memory_analysis()
    assert mem.alias_size_in_bytes == n_bytes  # every params and state byte reused in place
    assert mem.output_size_in_bytes - mem.alias_size_in_bytes < 1024  # only the tuple tables
    assert _copied_parameters(compiled.as_text()) == []


@pytest.mark.parametrize("name,make", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_step_without_donation_allocates_fresh_outputs(name, make):
    compiled, n_bytes = _compiled(make(), donate=False, value=LOSS)
    mem = compiled.memory_analysis()
    assert mem.alias_size_in_bytes == 0
    assert mem.output_size_in_bytes >= n_bytes


# gradtx and its optax counterpart on the same work (the benchmarks' families)
COUNTERPARTS = [
    (
        "rmsprop",
        lambda: gradtx.rmsprop(1e-2, 0.99, 1e-8),
        lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False),
    ),
    (
        "rmsprop[wd,momentum,centered]",
        lambda: gradtx.rmsprop(1e-2, 0.99, 1e-8, 1e-4, 0.9, centered=True),
        lambda: optax.chain(
            optax.add_decayed_weights(1e-4),
            optax.rmsprop(
                1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False, centered=True, momentum=0.9
            ),
        ),
    ),
    (
        "chain[rms,nesterov,decay,lr]",
        _chain4,
        lambda: optax.chain(
            optax.scale_by_rms(0.99, eps_in_sqrt=False),
            optax.trace(0.9, nesterov=True),
            optax.add_decayed_weights(1e-4),
            optax.scale_by_learning_rate(1e-2),
        ),
    ),
    ("rprop", lambda: gradtx.rprop(1e-2), lambda: optax.rprop(1e-2)),
]


def _real_step_cost(tx, apply):
    """Bytes accessed and temporary bytes of the donated step on the real leaves."""
    compiled, _ = _compiled(tx, donate=True, tree=_real_tree, apply=apply)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost["bytes accessed"], compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("name,ours,theirs", COUNTERPARTS, ids=[c[0] for c in COUNTERPARTS])
def test_donated_step_moves_no_more_memory_than_optax(name, ours, theirs):
    """The donated step does no more memory work than optax's on the same work: no more
    bytes read and written (XLA's cost analysis, every kernel's operands and outputs)
    and no larger temporary buffer. The step is memory-bound, so this is the speed
    target of issue 13 in a form that does not depend on the machine's load."""
    our_bytes, our_temp = _real_step_cost(ours(), gradtx.apply_updates)
    their_bytes, their_temp = _real_step_cost(theirs(), optax.apply_updates)
    assert our_bytes <= their_bytes
    assert our_temp <= their_temp


# RMSprop's L2 penalty (weight_decay) in every combination of its other options
L2_PENALISED = [
    (
        f"rmsprop[wd,momentum={m},centered={c},maximize={x}]",
        lambda m=m, c=c, x=x: gradtx.rmsprop(
            1e-2, weight_decay=1e-4, momentum=m, centered=c, maximize=x
        ),
    )
    for m in (0.0, 0.9)
    for c in (False, True)
    for x in (False, True)
] + [
    (
        "rmsprop[injected wd,momentum,centered]",
        lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(
            learning_rate=1e-2, weight_decay=1e-4, momentum=0.9, centered=True
        ),
    )
]


@pytest.mark.parametrize("name,make", L2_PENALISED, ids=[t[0] for t in L2_PENALISED])
def test_weight_decay_needs_no_temporary_buffer(name, make):
    """``rmsprop(weight_decay=...)`` computes g + wd * theta inside its normaliser's rule,
    once for the averages' loops and once for the update's (``_rms_math.inputs_of``): the
    donated step then allocates no temporary buffer (the next test shows that the check
    can tell)."""
    compiled, _ = _compiled(make(), donate=True, tree=_real_tree)
    assert compiled.memory_analysis().temp_size_in_bytes == 0


def test_weight_decay_as_blocks_has_a_temporary_buffer():
    """The same work written as the chain of blocks (``add_decayed_weights`` before the
    normaliser) has a temporary buffer, 4 bytes per param."""
    n_params = sum(x.size for x in jax.tree.leaves(_real_tree()))
    chained = gradtx.chain(
        gradtx.add_decayed_weights(1e-4),
        gradtx.scale_by_rms(0.99, eps_in_sqrt=False),
        gradtx.scale_by_learning_rate(1e-2),
    )
    compiled, _ = _compiled(chained, donate=True, tree=_real_tree)
    assert compiled.memory_analysis().temp_size_in_bytes >= 4 * n_params


# ---------------------------------------------------------------------------------------
# An eager ``init`` returns a state whose leaves are distinct buffers, so that a jitted
# step donating the state (``donate_argnums``) can run on it: XLA refuses to donate one
# buffer twice ("Attempt to donate the same buffer twice").
# ---------------------------------------------------------------------------------------


INIT_TRANSFORMS = {
    "MultiSteps": lambda: gradtx.MultiSteps(gradtx.rmsprop(1e-2), every_k_schedule=2),
    "apply_if_finite": lambda: gradtx.apply_if_finite(gradtx.rmsprop(1e-2), 3),
    "inject_hyperparams": lambda: gradtx.inject_hyperparams(gradtx.rmsprop)(learning_rate=0.1),
    "rprop irprop+": lambda: gradtx.rprop(variant="irprop+"),
    "rmsprop centered": lambda: gradtx.rmsprop(1e-2, momentum=0.9, centered=True),
}


@pytest.mark.parametrize("name", INIT_TRANSFORMS)
def test_state_leaves_are_distinct_buffers_and_donatable(name):
    tx = INIT_TRANSFORMS[name]()
    params = {"w": jnp.ones(3, jnp.float32), "b": jnp.zeros((), jnp.float32)}
    state = tx.init(params)
    pointers = [leaf.unsafe_buffer_pointer() for leaf in jax.tree.leaves(state) if leaf.size]
    assert len(pointers) == len(set(pointers)), "init returned one buffer twice"

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state):
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = tx.update(grads, state, params, value=jnp.sum(params["w"]))
        return gradtx.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    assert jnp.all(jnp.isfinite(params["w"]))
