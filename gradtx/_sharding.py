"""Placing a state leaf like its param, whether ``init`` runs eagerly or under ``jax.jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.shard_alike import shard_alike

from gradtx._numerics import as_real, real_shape


def placed_like(p: jax.Array, s: jax.Array) -> jax.Array:
    """State leaf ``s`` with param ``p``'s sharding, when ``s`` has ``p``'s shape (for a
    complex ``p``: its real view's, the sharding extended over the trailing axis).

    A concrete ``p`` (eager ``init``, or params closed over by a jitted function) gives
    its sharding directly: ``s`` is moved there (a ``jnp.zeros(p.shape)`` would land on
    the default device), or constrained to it when ``s`` is traced (``init_leaf`` closed
    over a traced hyperparameter). A traced ``p`` (``jax.jit(init)``) has no sharding
    yet: ``shard_alike`` asks sharding propagation to give ``s`` the one ``p`` will have,
    and with ``Explicit`` mesh axes the sharding of ``p``'s type is given to ``s``'s.
    Without this, the state of FSDP-sharded params comes out of a jitted ``init``
    replicated or on one device, as optax's does. On one device none of it costs
    anything: nothing is moved, and ``shard_alike`` leaves no trace in the program.
    """
    if s.shape != real_shape(p):
        return s
    if isinstance(p, jax.core.Tracer):
        p = as_real(p)
        want = jax.typeof(p).sharding
        if not want.mesh.empty and jax.typeof(s).sharding != want:
            s = jax.sharding.reshard(s, want)  # a mesh with Explicit axes: in the type
        return shard_alike(p, s)[1]
    sharding = getattr(p, "sharding", None)
    if sharding is None or (len(sharding.device_set) == 1 and isinstance(s, jax.core.Tracer)):
        return s
    if jnp.iscomplexobj(p):
        if isinstance(sharding, jax.sharding.NamedSharding):
            pad = [None] * (s.ndim - len(sharding.spec))
            sharding = sharding.update(spec=(*sharding.spec, *pad))
        elif not isinstance(sharding, jax.sharding.SingleDeviceSharding):
            return s  # no rule to extend it over the trailing axis
    if isinstance(s, jax.core.Tracer):
        return jax.lax.with_sharding_constraint(s, sharding)
    if s.sharding.is_equivalent_to(sharding, s.ndim):
        return s
    return jax.device_put(s, sharding)
