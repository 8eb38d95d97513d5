"""The optimizer's share of a full train step (forward + backward + update).

    python -m benchmarks.train_step [--quick]

Two models, the same in JAX and torch: an MLP (784-2048-1024-10 on batch 128; 3.7M
params) and a small CNN (two 3x3 convolutions, 32 and 64 channels, and a dense layer, on
28x28 images, batch 64). For each library the step with the update (jitted and donated
for JAX; ``loss.backward(); opt.step()`` for torch) races, interleaved, against the same
step without it (forward + backward only); the optimizer's share is
``1 - t(forward + backward) / t(step)``.
"""

from __future__ import annotations

import argparse
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import gradtx
from benchmarks import run
from benchmarks.contenders import fresh

LR = 1e-3


def _mlp_shapes():
    return [(784, 2048), (2048,), (2048, 1024), (1024,), (1024, 10), (10,)]


def _cnn_shapes():
    return [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (64 * 7 * 7, 10), (10,)]


def jax_model(kind):
    def mlp(p, x):
        for i in range(0, len(p) - 2, 2):
            x = jax.nn.relu(x @ p[i] + p[i + 1])
        return x @ p[-2] + p[-1]

    def conv(x, w, b):
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        y = jax.nn.relu(y + b[None, :, None, None])
        return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def cnn(p, x):
        x = conv(conv(x, p[0], p[1]), p[2], p[3])
        return x.reshape(x.shape[0], -1) @ p[4] + p[5]

    return {"mlp": mlp, "cnn": cnn}[kind]


def torch_model(kind, params):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in params]
            )

        def forward(self, x):
            p = self.p
            if kind == "mlp":
                for i in range(0, len(p) - 2, 2):
                    x = torch.relu(x @ p[i] + p[i + 1])
                return x @ p[-2] + p[-1]
            for i in (0, 2):
                x = torch.max_pool2d(torch.relu(torch.conv2d(x, p[i], p[i + 1], padding=1)), 2)
            return x.flatten(1) @ p[4] + p[5]

    return M()


def data(kind, rng):
    if kind == "mlp":
        return rng.standard_normal((128, 784), np.float32), rng.standard_normal(
            (128, 10), np.float32
        )
    return rng.standard_normal((64, 1, 28, 28), np.float32), rng.standard_normal(
        (64, 10), np.float32
    )


class JaxStep:
    def __init__(self, kind, params, x, y, tx=None, apply=None):
        model = jax_model(kind)

        def loss(p):
            return jnp.mean((model(p, self.x) - self.y) ** 2)

        self.x, self.y = jnp.asarray(x), jnp.asarray(y)
        self.params = [jnp.asarray(p) for p in params]
        if tx is None:  # forward + backward only: the gradients are the output
            self.fn = jax.jit(lambda p: jax.grad(loss)(p))
            self.state = None
        else:

            def step(p, s):
                g = jax.grad(loss)(p)
                u, s = tx.update(g, s, p)
                return apply(p, u), s

            self.state = tx.init(self.params)
            self.fn = jax.jit(step, donate_argnums=(0, 1))
        self.step()

    def rehome(self):
        """Fresh buffers for params and state (see ``contenders.JaxRunner.rehome``: the
        runner built first is otherwise the slowest, and the forward + backward step,
        built first, would make every optimizer's share look smaller)."""
        self.params, self.state = fresh((self.params, self.state))

    def step(self):
        if self.state is None:
            jax.block_until_ready(self.fn(self.params))
        else:
            self.params, self.state = self.fn(self.params, self.state)
            jax.block_until_ready(self.params)


class TorchStep:
    def __init__(self, kind, params, x, y, opt=None):
        self.m = torch_model(kind, params)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.opt = opt(self.m.parameters()) if opt else None
        self.step()

    def step(self):
        self.m.zero_grad(set_to_none=False)
        torch.mean((self.m(self.x) - self.y) ** 2).backward()
        if self.opt:
            self.opt.step()


def contenders(kind, params, x, y, families):
    out = {
        "jax forward+backward": JaxStep(kind, params, x, y),
        "torch forward+backward": TorchStep(kind, params, x, y),
    }
    txs = {
        "rprop": (
            lambda: gradtx.rprop(LR),
            lambda: optax.rprop(LR),
            lambda ps: torch.optim.Rprop(ps, LR, foreach=True),
        ),
        "rmsprop": (
            lambda: gradtx.rmsprop(LR),
            lambda: optax.rmsprop(LR, decay=0.99, eps=1e-8, eps_in_sqrt=False),
            lambda ps: torch.optim.RMSprop(ps, LR, foreach=True),
        ),
        "sgd": (
            lambda: gradtx.scale(-LR),
            lambda: optax.sgd(LR),
            lambda ps: torch.optim.SGD(ps, LR, foreach=True),
        ),
    }
    for fam in families:
        g, o, t = txs[fam]
        out[f"gradtx {fam}"] = JaxStep(kind, params, x, y, g(), gradtx.apply_updates)
        out[f"optax {fam}"] = JaxStep(kind, params, x, y, o(), optax.apply_updates)
        out[f"torch {fam}"] = TorchStep(kind, params, x, y, t)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds = 5 if args.quick else 25
    rng = np.random.default_rng(0)
    lines = [
        f"load before: {os.getloadavg()[0]:.2f}; {rounds} interleaved rounds; step: median "
        "over rounds [interquartile range]; update = step - forward+backward (medians); "
        "share = update / step",
        "",
        "| model | optimizer | gradtx step ms [IQR] | gradtx update ms | share "
        "| optax step ms [IQR] | optax update ms | share | torch step ms [IQR] "
        "| torch update ms | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, shapes in (("mlp", _mlp_shapes()), ("cnn", _cnn_shapes())):
        params = [0.05 * rng.standard_normal(s, dtype=np.float32) for s in shapes]
        x, y = data(kind, rng)
        families = ["rprop", "rmsprop", "sgd"]
        rs = contenders(kind, params, x, y, families)
        per = run.race_samples(rs, {}, rounds, rng, 0.05)

        def cells_of(name, base, per=per):
            step, fb = statistics.median(per[name]), statistics.median(per[base])
            q1, _, q3 = statistics.quantiles(per[name], n=4)
            return [
                f"{1e3 * step:.2f} [{1e3 * q1:.2f}-{1e3 * q3:.2f}]",
                f"{1e3 * (step - fb):.2f}",
                f"{1 - fb / step:.0%}",
            ]

        for fam in families:
            cells = []
            for lib, base in (("gradtx", "jax"), ("optax", "jax"), ("torch", "torch")):
                cells += cells_of(f"{lib} {fam}", f"{base} forward+backward")
            lines.append(f"| {kind} | {fam} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"load after: {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
