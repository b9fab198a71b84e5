"""Host syncs and aten ops, counted on any device: the CPU's proxies for what costs time on a GPU.

On a GPU every read of a device value (`.item()`, `float(t)`, `if t:` ...) waits for all queued work, and every
aten op on the device is a kernel launch of a few microseconds. Both can be counted on the CPU, where they cost
nothing: reads by wrapping the Tensor methods that return Python values, ops with a TorchDispatchMode.

On the CPU every tensor lives in host memory, so what counts as a device tensor needs a rule. Host copies are
what Telemetry's transfers make (runner/telemetry.py registers them; on a GPU they are pinned copies whose
reads wait for nothing), and so is everything computed from host copies alone (a W&B image rendered from a
transferred snapshot): the dispatch mode follows that. Any other tensor is a device tensor. Only reads on the
counting thread (the one that launches the training kernels) count: a checkpoint writer thread that reads a
number waits itself, but never holds up the launches.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Callable, Iterator

import torch
# TorchDispatchMode is torch's documented hook for seeing every aten op; it lives in a private module.
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..runner.telemetry import is_host_copy

READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


class _HostTensors:
    """Tensors known to be in host memory: Telemetry's host copies and what is computed from them alone."""

    def __init__(self) -> None:
        self.derived: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()

    def __contains__(self, t: torch.Tensor) -> bool:
        return is_host_copy(t) or self.derived.get(id(t)) is t

    def add(self, t: torch.Tensor) -> None:
        self.derived[id(t)] = t


class OpCounter(TorchDispatchMode):
    """Counts device ops (`ops`) and host ops (`host_ops`: every tensor input a host tensor), and marks the results
    of host ops as host tensors."""

    def __init__(self, host: _HostTensors) -> None:
        super().__init__()
        self.host = host
        self.ops = 0
        self.host_ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if inputs and all(t in self.host for t in inputs):
            self.host_ops += 1
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.host.add(t)
        else:
            self.ops += 1
        return out


@contextlib.contextmanager
def counted_reads(host: _HostTensors) -> Iterator[dict]:
    """Counts the calls on this thread that read a tensor's value into Python: {"syncs": reads of device tensors
    (each a host sync on a GPU), "host_reads": reads of host tensors (free)}."""
    count = {"syncs": 0, "host_reads": 0}
    saved = {name: getattr(torch.Tensor, name) for name in READS}
    thread = threading.get_ident()

    def wrap(original):
        def read(self, *args, **kwargs):
            if threading.get_ident() == thread:
                count["host_reads" if self in host else "syncs"] += 1
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
    """{"ops", "host_ops", "syncs", "host_reads"} over the block (see the module docstring)."""
    result = {"ops": 0, "host_ops": 0, "syncs": 0, "host_reads": 0}
    host = _HostTensors()
    counter = OpCounter(host)

    def collect() -> None:
        result.update(ops=counter.ops, host_ops=counter.host_ops, **reads)

    with counted_reads(host) as reads, counter:
        try:
            yield result
        finally:
            collect()


def count_ops_and_syncs(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float]:
    """Device ops and device reads per call of `fn`, averaged over `repeats` calls."""
    with counting() as c:
        for _ in range(repeats):
            fn()
    return c["ops"] / repeats, c["syncs"] / repeats


# ----------------------------------------------------------------------------- the training loop's counts

def loop_counts(size: int = 64, steps: int = 100, history: int = 50, log_every: int = 1, folder: str = "outputs/counts",
                checkpoint_every: int = 20, overrides: tuple[str, ...] = ()) -> dict:
    """Host syncs and aten ops per step of the real training loop (train.py's Trainer, module, L-BFGS, Telemetry
    and periodic checkpoints), random weights, counted over every step but the first (which computes the targets
    and makes the first-step line search). Two scales: the count includes a scale change, and a periodic
    checkpoint every `checkpoint_every` steps (written to `folder`). Telemetry transfers at fixed steps only (no
    wall-clock flush), so the counts do not depend on the machine's speed."""
    import lightning as L

    from ..config import load_config
    from ..runner.loop import fit, loop_for

    class CountSteps(L.Callback):
        def __init__(self):
            self.context, self.result = None, {}

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 1:
                self.context = counting()
                self.result = self.context.__enter__()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == trainer.max_steps and self.context is not None:
                self.context.__exit__(None, None, None)

    cfg = load_config(None, [f"data.size={size}", f"trainer.max_steps={steps}", f"scales.min={size // 2}",
                             f"scales.steps={steps // 2}", "model.weights=random", f"optim.history={history}",
                             f"logger.log_every={log_every}", "logger.mode=offline",
                             f"output.checkpoint_every={checkpoint_every}", "trainer.enable_progress_bar=false",
                             f"output.dir={folder}", *overrides])
    counter = CountSteps()
    # No W&B run is started: what is logged stops at the host.
    module, trainer = loop_for(cfg, [counter], checkpoints=True, flush_seconds=None)
    fit(trainer, module)
    counted = steps - 1
    r = counter.result
    return {"size": size, "steps": counted, "history": history, "log_every": log_every,
            "scales": [list(module.size_hw(s)) for s in range(len(module.schedule.sizes))],
            "syncs_per_step": r["syncs"] / counted, "ops_per_step": r["ops"] / counted,
            "host_reads": r["host_reads"], "host_ops_per_step": r["host_ops"] / counted}
