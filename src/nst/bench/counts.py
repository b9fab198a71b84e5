"""Host syncs and aten ops, counted on any device: the CPU's proxies for what costs time on a GPU.

On a GPU every read of a device value (`.item()`, `float(t)`, `if t:` ...) waits for all queued work, and every
aten op is a kernel launch of a few microseconds. Both can be counted on the CPU, where they cost nothing:
reads by wrapping the Tensor methods that return Python values, ops with a TorchDispatchMode.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Callable, Iterator

import lightning as L
import torch
# TorchDispatchMode is torch's documented hook for seeing every aten op; it lives in a private module.
from torch.utils._python_dispatch import TorchDispatchMode

from ..config import load_config
from ..runner.hardware import describe_device
from ..runner.run import loop_for, quiet_lightning, steps_loader
from .common import write_report

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


# ----------------------------------------------------------------------------- the training loop's counts

def loop_counts(size: int = 48, steps: int = 100, history: int = 50, log_every: int = 1,
                overrides: tuple[str, ...] = ()) -> dict:
    """Host reads and aten ops per step of the real training loop (train.py's Trainer, module, L-BFGS and
    Telemetry), one scale, random weights; counted over every step but the first (which computes the
    targets and makes the first-step line search)."""


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

    cfg = load_config(None, [f"data.size={size}", f"trainer.max_steps={steps}", "scales.min=0", "model.weights=random",
                             f"optim.history={history}", f"logger.log_every={log_every}", "logger.mode=offline",
                             "trainer.enable_progress_bar=false", "output.dir=outputs/counts", *overrides])
    counter = CountSteps()
    module, trainer = loop_for(cfg, [counter])  # no W&B run is started: what is logged stops at the host
    with quiet_lightning():
        trainer.fit(module, train_dataloaders=steps_loader(steps))
    counted = steps - 1
    return {"size": size, "steps": counted, "history": history, "log_every": log_every,
            "syncs_per_step": counter.result["syncs"] / counted, "ops_per_step": counter.result["ops"] / counted}


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m nst.bench.counts",
                                description="Host syncs and aten ops per step of the training loop (CPU proxies).")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--histories", type=int, nargs="+", default=[5, 50])
    p.add_argument("--log-every", type=int, nargs="+", default=[1, 10])
    p.add_argument("--out", default="outputs/bench_counts.json")
    args = p.parse_args(argv)
    rows = [loop_counts(args.size, args.steps, h, e) for h in args.histories for e in args.log_every]
    print(f"per step of the training loop on {describe_device()}, {args.size} px, {args.steps} steps:")
    print(f"{'history':>7} {'log_every':>9} {'host syncs':>10} {'aten ops':>9}")
    for r in rows:
        print(f"{r['history']:>7} {r['log_every']:>9} {r['syncs_per_step']:>10.3f} {r['ops_per_step']:>9.1f}")
    write_report({"device": describe_device(), "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
