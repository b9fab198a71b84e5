"""Host syncs and aten ops, counted on any device: the CPU's proxies for what costs time on a GPU.

On a GPU every read of a device value (`.item()`, `float(t)`, `if t:` ...) waits for all queued work, and every
aten op is a kernel launch of a few microseconds. Both can be counted on the CPU, where they cost nothing:
reads by wrapping the Tensor methods that return Python values, ops with a TorchDispatchMode.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
# TorchDispatchMode is torch's documented hook for seeing every aten op; it lives in a private module.
from torch.utils._python_dispatch import TorchDispatchMode

READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def counted_reads() -> Iterator[list[int]]:
    """Counts the calls that read a tensor's value into Python (each one a host sync on a GPU)."""
    count = [0]
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(original):
        def read(self, *args, **kwargs):
            count[0] += 1
            return original(self, *args, **kwargs)
        return read

    for name, original in saved.items():
        setattr(torch.Tensor, name, wrap(original))
    try:
        yield count
    finally:
        for name, original in saved.items():
            setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def counting() -> Iterator[dict]:
    """{"ops": ..., "syncs": ...} over the block."""
    result = {"ops": 0, "syncs": 0}
    counter = OpCounter()
    with counted_reads() as reads, counter:
        yield result
        result["ops"], result["syncs"] = counter.ops, reads[0]
    result["ops"], result["syncs"] = counter.ops, reads[0]


def count_ops_and_syncs(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float]:
    """Aten ops and host reads per call of `fn`, averaged over `repeats` calls."""
    with counting() as c:
        for _ in range(repeats):
            fn()
    return c["ops"] / repeats, c["syncs"] / repeats
