"""The parameter trees the suite times: shapes only; arrays are made by the runner.

Each workload is a list of leaf shapes (float32). The four of the issue:

* ``big``:   one leaf of 2^24 params (64 MiB): pure streaming, the roofline case;
* ``many``:  1,000 leaves of 2^14 (the same 16M params): per-leaf and per-buffer costs;
* ``mlp``:   an MLP-like tree, 10 dense layers of 640x640 plus biases (20 leaves, 4.1M);
* ``tiny``:  10 leaves of 100 params: nothing but call and kernel-launch overhead.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Workload(NamedTuple):
    name: str
    description: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def n_leaves(self) -> int:
        return len(self.shapes)


def _mlp(width: int = 640, depth: int = 10) -> tuple[tuple[int, ...], ...]:
    shapes: list[tuple[int, ...]] = []
    for _ in range(depth):
        shapes += [(width, width), (width,)]
    return tuple(shapes)


WORKLOADS = {
    "big": Workload("big", "1 leaf of 2^24", ((1 << 24,),)),
    "many": Workload("many", "1,000 leaves of 2^14", tuple((1 << 14,) for _ in range(1000))),
    "mlp": Workload("mlp", "MLP, 20 leaves, 4.1M", _mlp()),
    "tiny": Workload("tiny", "10 leaves of 100", tuple((100,) for _ in range(10))),
}


def uniform(n_leaves: int, size: int) -> Workload:
    """``n_leaves`` leaves of ``size`` params each (for the compile-time table)."""
    return Workload(f"{n_leaves}x{size}", f"{n_leaves} leaves of {size}", ((size,),) * n_leaves)
