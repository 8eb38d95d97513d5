"""What XLA actually runs: kernels and bytes per parameter, read from the compiled HLO.

A *kernel* is an instruction of the compiled entry computation that touches memory:
a fusion, a copy, a custom call, or any unfused op; parameters, tuples,
get-tuple-element, bitcasts and constants are bookkeeping and are not counted.
*Bytes* are XLA's own cost analysis ("bytes accessed": every kernel's operands and
outputs), so a value written by one kernel and read back by the next counts twice,
which is exactly the traffic the roofline charges. *Instructions* are every
instruction of the compiled module, inside the fusions too: the arithmetic a step does
(constants and broadcasts included), and what XLA's compile time grows with. *Temp* is
the executable's temporary buffer (copies, intermediates XLA materialises): allocated
on every call, and on CPU a fresh allocation of tens of MiB is paid again in page
faults at every step.
"""

from __future__ import annotations

import collections
import re
from typing import NamedTuple

_BOOKKEEPING = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant"}
# "  %name = f32[16]{0} fusion(...)" / "  ROOT %t = (f32[..], s8[..]) tuple(...)"
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%\S+\s*=\s*(?:\([^=]*?\)|\S+)\s+([\w-]+)\(")


class Counts(NamedTuple):
    kernels: int  # memory-touching instructions in the entry computation
    by_op: dict  # opcode -> count
    bytes_accessed: float  # XLA cost analysis, whole step
    temp_bytes: int  # the step's temporary buffer (memory analysis), allocated every call
    instructions: int  # every instruction of the module, fused computations included

    def per_leaf(self, n_leaves: int) -> float:
        return self.kernels / n_leaves


def entry_ops(hlo_text: str) -> collections.Counter:
    """Opcode counts of the entry computation of an HLO module's text."""
    ops: collections.Counter = collections.Counter()
    in_entry = False
    for line in hlo_text.splitlines():
        if line.startswith("ENTRY "):
            in_entry = True
            continue
        if in_entry:
            if line.startswith("}"):
                break
            m = _INSTR.match(line)
            if m:
                ops[m.group(1)] += 1
    return ops


def instructions(hlo_text: str) -> int:
    """The number of instructions in all computations of an HLO module's text."""
    return sum(1 for line in hlo_text.splitlines() if _INSTR.match(line))


def count(compiled, n_params: int, n_leaves: int) -> Counts:
    """Kernels and bytes accessed of a compiled step (``jit(f).lower(...).compile()``)."""
    text = compiled.as_text()
    ops = entry_ops(text)
    kernels = {op: n for op, n in ops.items() if op not in _BOOKKEEPING}
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax returned one dict per device
        cost = cost[0]
    temp = compiled.memory_analysis().temp_size_in_bytes
    return Counts(
        sum(kernels.values()),
        dict(kernels),
        float(cost.get("bytes accessed", 0.0)),
        temp,
        instructions(text),
    )
