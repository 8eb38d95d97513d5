"""The gradtx chains that reproduce other libraries' optimizers.

Each function here is shown verbatim in ``docs/porting.md`` and tested against its
reference in this package (the tolerance reached is in the docs). They are recipes, not
API: copy the chain you need.
"""

from __future__ import annotations

import gradtx


def optax_rmsprop(
    learning_rate,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=None,
    nesterov=False,
    bias_correction=False,
):
    """``optax.rmsprop(...)`` (optax 0.2.8), same arguments. optax scales by the learning
    rate *before* its momentum trace, so the buffer holds lr-scaled steps."""
    normaliser = gradtx.scale_by_stddev if centered else gradtx.scale_by_rms
    blocks = [
        normaliser(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        gradtx.scale_by_learning_rate(learning_rate),
    ]
    if momentum is not None:
        blocks.append(gradtx.trace(momentum, nesterov))
    return gradtx.chain(*blocks)


def keras_rmsprop(
    learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None
):
    """``keras.optimizers.RMSprop(...)`` (Keras 3), same arguments: the TensorFlow
    convention, eps inside the root and the learning rate inside the momentum buffer::

        v = rho v + (1 - rho) g^2          (centered: a = rho a + (1 - rho) g, v - a^2)
        m = momentum m + lr g / sqrt(v + epsilon)
        w = w - m                          (weight_decay: first w = w - lr wd w)

    Keras keeps ``learning_rate`` in a float32 variable: for float64 parity pass
    ``float(numpy.float32(lr))``."""
    normaliser = gradtx.scale_by_stddev if centered else gradtx.scale_by_rms
    blocks = [normaliser(decay=rho, eps=epsilon, eps_in_sqrt=True)]
    if weight_decay:
        # Keras's decoupled decay, w <- w - lr*wd*w, with the lr-scaled momentum: build
        # the positive step, add lr*wd*w, and negate once at the end.
        blocks += [gradtx.scale(learning_rate)]
        if momentum:
            blocks.append(gradtx.trace(momentum))
        blocks += [gradtx.add_decayed_weights(learning_rate * weight_decay), gradtx.scale(-1.0)]
        return gradtx.chain(*blocks)
    blocks.append(gradtx.scale_by_learning_rate(learning_rate))
    if momentum:
        blocks.append(gradtx.trace(momentum))
    return gradtx.chain(*blocks)


def lucid_rprop(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    """``lucid.optim.Rprop`` as its API page defines it: Rprop- (the step uses sign(g_t)
    even after a sign change; nothing is zeroed). Lucid's source zeroes the gradient on
    a sign change instead, which is torch's rule: ``gradtx.rprop(lr, etas, step_sizes)``."""
    return gradtx.rprop(lr, etas, step_sizes, variant="rprop-")


def lucid_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    """``lucid.optim.RMSprop``: torch's arguments and defaults, but eps inside the root
    (its source divides by ``sqrt(avg + eps)``); lr outside the momentum buffer."""
    normaliser = gradtx.scale_by_stddev if centered else gradtx.scale_by_rms
    blocks = [gradtx.add_decayed_weights(weight_decay)] if weight_decay else []
    blocks.append(normaliser(decay=alpha, eps=eps, eps_in_sqrt=True))
    if momentum:
        blocks.append(gradtx.trace(momentum))
    blocks.append(gradtx.scale_by_learning_rate(lr))
    return gradtx.chain(*blocks)


def dragon_rmsprop(
    lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, scale=1.0, clip_norm=0.0
):
    """``dragon.vm.torch.optim.RMSprop`` as its API page defines it: the gradient is
    scaled, clipped by its own L2 norm (per parameter), L2-decayed, then::

        v = alpha v + (1 - alpha) g^2
        m = momentum m + lr g / (sqrt(v) + eps)       (lr inside the buffer)
        w = w - m

    ``centered`` is in Dragon's signature but its page gives it no rule (and its CPU
    kernel takes no such argument), so it is not reproduced."""
    blocks = [gradtx.scale(scale)] if scale != 1 else []
    if clip_norm > 0:
        blocks.append(gradtx.clip_by_block_norm(clip_norm))
    if weight_decay:
        blocks.append(gradtx.add_decayed_weights(weight_decay))
    blocks += [
        gradtx.scale_by_rms(decay=alpha, eps=eps, eps_in_sqrt=False),
        gradtx.scale_by_learning_rate(lr),
    ]
    if momentum:
        blocks.append(gradtx.trace(momentum))
    return gradtx.chain(*blocks)
