"""Keywords that other libraries spell differently (optax's ``decay=``, torch's ``lr=``),
turned into a ``TypeError`` that names gradtx's spelling."""

from __future__ import annotations

import functools


def other_spellings(spellings: dict[str, str]):
    """Decorate a factory so that a keyword in ``spellings`` raises ``TypeError`` with its
    advice (gradtx's spelling, or the block that takes it). The signature seen by
    ``inspect`` (and ``inject_hyperparams``) is the function's own."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            for name in kwargs:
                if name in spellings:
                    raise TypeError(
                        f"{fn.__name__}() has no argument {name}= (optax's or torch's "
                        f"spelling): {spellings[name]}."
                    )
            return fn(*args, **kwargs)

        return wrapped

    return decorate
