r"""Transforms as values: equal when built alike, and valid arguments of jitted functions.

A transform is a :class:`~gradtx.GradientTransformation`, a ``NamedTuple`` of two
functions. Closures compare by identity, so two ``rmsprop(1e-3)`` would be two different
objects: ``jax.jit(step, static_argnums=0)`` (or equinox's ``filter_jit``) would compile
once for each, and a transform could not be an ordinary argument of a jitted function.

Here every public constructor's ``init`` and ``update`` are :class:`Keyed` callables: the
function, plus a *key* ``(constructor, its arguments, normalised)``. Equality and hash come
from the key, so tuple equality makes two transforms equal exactly when they were built by
the same constructor with equal arguments (a chain's key holds its members, which compare
by their own keys). ``Keyed`` is a pytree with no leaves whose static data is itself: a
transform passed to ``jax.jit`` as an argument is all static, and a rebuilt-alike one hits
the compilation cache.

The key is attached once, where ``gradtx/__init__.py`` publishes the constructors
(:func:`publish`), not in each module. :func:`constructor` is the same decorator, public,
for transforms that users write with :func:`gradtx.leafwise`.

What "equal arguments" means (:func:`normalise`):

* numbers, strings, ``None``, bools: equal type and value (``1`` and ``1.0`` differ;
  ``nan`` equals ``nan``, ``-0.0`` differs from ``0.0``: compared by their bits);
* concrete arrays (NumPy or JAX): by value: dtype, shape, weak type and bytes;
* tracers (a transform built inside a traced function): by identity;
* containers (tuples, lists, dicts, any pytree): by structure and leaves;
* gradtx transforms and gradtx schedules: by their keys;
* anything else (a user's function, an optax transform or schedule): by identity.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradtx._base import GradientTransformation


class _Identity:
    """An argument compared by identity (unhashable objects, tracers)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)


def _leaf(x: Any) -> Any:
    """One leaf of an argument, as a hashable value that compares as documented above."""
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return (type(x), x)
    if isinstance(x, float):
        return (type(x), x.hex() if math.isfinite(x) else repr(x))
    if isinstance(x, complex):
        return (complex, x.real.hex(), x.imag.hex())
    if isinstance(x, jax.core.Tracer):
        return _Identity(x)
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        weak = bool(getattr(x, "weak_type", False))
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return ("key", str(x.dtype), _leaf(jax.random.key_data(x)))
        a = np.asarray(x)
        return ("array", a.dtype.str, a.shape, weak, a.tobytes())
    try:
        hash(x)
    except TypeError:
        return _Identity(x)
    return x  # Keyed, MultiSteps (by their keys), functions, dtypes, classes (identity)


def normalise(value: Any) -> Any:
    """An argument as a hashable value: its pytree structure and its leaves (:func:`_leaf`)."""
    try:
        leaves, treedef = jax.tree.flatten(value)
    except (TypeError, ValueError):  # e.g. a dict whose keys cannot be sorted
        return _leaf(value)
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:
        return _leaf(value)
    return (treedef, tuple(_leaf(x) for x in leaves))


def _key(identity: Any, signature: inspect.Signature, args: tuple, kwargs: dict) -> tuple:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return (identity, tuple((name, normalise(v)) for name, v in bound.arguments.items()))


class Keyed:
    """A callable (a transform's ``init`` or ``update``, or a schedule) that compares and
    hashes by ``(key, role)``; a pytree with no leaves."""

    __slots__ = ("__weakref__", "__wrapped__", "_hash", "key", "label", "role")

    def __init__(self, fn: Callable, key: Any, role: str, label: str):
        self.__wrapped__ = fn.__wrapped__ if isinstance(fn, Keyed) else fn
        self.key, self.role, self.label = key, role, label
        self._hash = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    @property
    def __name__(self) -> str:
        return getattr(self.__wrapped__, "__name__", self.role)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Keyed):
            return NotImplemented
        return self is other or (self.role == other.role and self.key == other.key)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.role, self.key))
        return self._hash

    def __repr__(self) -> str:
        return f"<{self.role} of {self.label}>"

    def __copy__(self) -> Keyed:  # immutable, as the functions it stands for
        return self

    def __deepcopy__(self, memo: dict) -> Keyed:
        return self


jax.tree_util.register_pytree_node(Keyed, lambda k: ((), k), lambda k, _: k)


def _shown(value: Any) -> str:
    if hasattr(value, "__gradtx_constructor__"):
        return f"gradtx.{value.__name__}"
    if inspect.isfunction(value):
        return value.__qualname__
    return repr(value)


def _label(name: str, args: tuple, kwargs: dict) -> str:
    shown = [_shown(a) for a in args] + [f"{k}={_shown(v)}" for k, v in kwargs.items()]
    text = f"{name}({', '.join(shown)})"
    return text if len(text) <= 200 else text[:197] + "..."


def keyed_transform(tx: Any, key: Any, label: str) -> Any:
    """``tx`` with ``init`` and ``update`` keyed (a ``GradientTransformation`` only)."""
    if type(tx) is not GradientTransformation:
        return tx
    init, update = Keyed(tx.init, key, "init", label), Keyed(tx.update, key, "update", label)
    return GradientTransformation(init, update)


def constructor(fn: Callable[..., Any]) -> Callable[..., Any]:
    r"""Make the transforms that ``fn`` builds values: equal when built alike.

    Decorate a function that returns a :class:`~gradtx.GradientTransformation` (a
    transform you write with :func:`gradtx.leafwise`, or a chain of gradtx blocks). Its
    transforms then compare and hash equal when built with equal arguments (defaults
    filled in), are valid arguments of ``jax.jit``\ ted functions, and a rebuilt-alike one
    does not retrace. Every public constructor of gradtx is decorated this way.

    Arguments compare by value (numbers, strings, concrete arrays, containers of them,
    gradtx transforms and schedules) or by identity (functions, optax transforms,
    tracers). The numbers are static: a different learning rate is a different transform
    and compiles again; to change one without recompiling, use
    :func:`gradtx.inject_hyperparams`. ``fn`` must build its transform from its
    arguments alone (no global state read at build time).

    Args:
      fn: a function returning a transform (a callable returning one is keyed too: a
        schedule).

    Returns:
      ``fn`` with the same signature and docstring.

    Example:
      >>> import jax.numpy as jnp
      >>> import gradtx
      >>> @gradtx.constructor
      ... def sign_descent(learning_rate):
      ...     return gradtx.leafwise(lambda g: (-learning_rate * jnp.sign(g), ()))
      >>> sign_descent(0.1) == sign_descent(0.1), sign_descent(0.1) == sign_descent(0.2)
      (True, False)
    """
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(
            f"constructor: expected a function that builds a transform, got {fn!r}; "
            "use it as a decorator: @gradtx.constructor above the def."
        )
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"
    return _constructor(
        fn, fn, "gradtx." + name.rsplit(".", 1)[-1] if name.startswith("gradtx._") else name
    )


def _constructor(fn: Callable[..., Any], identity: Any, name: str) -> Callable[..., Any]:
    """:func:`constructor`, with the key's first entry and the label's name given."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def build(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        key = _key(identity, signature, args, kwargs)
        label = _label(name, args, kwargs)
        if isinstance(out, GradientTransformation):
            return keyed_transform(out, key, label)
        if callable(out) and not isinstance(out, type) and not hasattr(out, "update"):
            return Keyed(out, key, "schedule", label)
        return out

    build.__gradtx_constructor__ = identity
    return build


def factory_of_constructors(fn: Callable[..., Callable]) -> Callable[..., Callable]:
    """For ``inject_hyperparams``: ``fn(...)`` returns a constructor; that constructor's
    transforms are keyed by ``(fn, fn's arguments)`` and their own arguments."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def outer(*args: Any, **kwargs: Any) -> Callable:
        inner = fn(*args, **kwargs)
        name = _label(f"gradtx.{fn.__name__}", args, kwargs)
        return _constructor(inner, _key(fn, signature, args, kwargs), name)

    outer.__gradtx_constructor__ = fn
    return outer


def keyed_class(cls: type) -> type:
    """In place, for a transform written as a class (``MultiSteps``): instances compare and
    hash by ``(cls, normalised arguments)``, their ``init`` and ``update`` are keyed, and
    the class is a pytree with no leaves."""
    if "__gradtx_constructor__" in cls.__dict__:
        return cls
    signature = inspect.signature(cls)
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        key = _key(cls, signature, args, kwargs)
        label = _label(f"gradtx.{cls.__name__}", args, kwargs)
        self._gradtx_key = key
        self.init = Keyed(self.init, key, "init", label)
        self.update = Keyed(self.update, key, "update", label)  # shadows the method

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, cls):
            return NotImplemented
        return self._gradtx_key == other._gradtx_key

    def __hash__(self) -> int:
        return hash(self._gradtx_key)

    cls.__init__, cls.__eq__, cls.__hash__ = __init__, __eq__, __hash__
    cls.__gradtx_constructor__ = cls
    jax.tree_util.register_pytree_node(cls, lambda x: ((), x), lambda x, _: x)
    return cls


# The public constructors, by what they return. tests/test_values.py fails when a
# function of ``gradtx.__all__`` is in none of these lists nor in its list of functions
# that build no transform.
TRANSFORMS = tuple(
    """
    add_decayed_weights apply_every apply_if_finite chain clip clip_by_block_norm
    clip_by_block_rms clip_by_global_norm ema flatten identity join_transforms leafwise masked
    multi_transform named_chain partition rmsprop rprop scale scale_by_learning_rate
    scale_by_rms scale_by_rprop scale_by_schedule scale_by_stddev set_to_zero trace
    zero_nans
    """.split()
)
SCHEDULES = tuple(
    """
    constant_schedule cosine_decay_schedule cosine_onecycle_schedule exponential_decay
    join_schedules linear_onecycle_schedule linear_schedule piecewise_constant_schedule
    piecewise_interpolate_schedule polynomial_schedule sgdr_schedule
    warmup_constant_schedule warmup_cosine_decay_schedule
    warmup_exponential_decay_schedule
    """.split()
)
FACTORIES = ("inject_hyperparams",)
CLASSES = ("MultiSteps",)


def publish(namespace: dict[str, Any]) -> None:
    """Key every public constructor in ``namespace`` (``gradtx``'s globals), in place."""
    for name in TRANSFORMS + SCHEDULES:
        if name in namespace:
            namespace[name] = constructor(namespace[name])
    for name in FACTORIES:
        if name in namespace:
            namespace[name] = factory_of_constructors(namespace[name])
    for name in CLASSES:
        if name in namespace:
            keyed_class(namespace[name])
