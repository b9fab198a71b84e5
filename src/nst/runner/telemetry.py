"""Numbers and images from the device to the host without stalling it, handed to the sinks that use them.

The module keeps the loss parts of the steps someone will look at (W&B, progress) and copies of the images
wanted (W&B grids, snapshots) on the device, with each picture's health. Now and then (every tenth of the run,
at an image, after `flush_seconds` if set, at the end) Telemetry moves all numbers recorded since the last time
in one transfer. On a GPU the copy goes to pinned memory without blocking and is read once its event has passed, so
the device never waits for the host; on the CPU it is read at once. The sinks then see the numbers in step
order: W&B runs, progress display, snapshot files, and the runner's watch on failed pictures.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass

import lightning as L
import torch

from typing import Optional

from ..model.module import StyleTransferModule

FLUSH_SECONDS = 2.0  # at most this long between transfers, so W&B and a slow progress display stay current


@dataclass
class Health:
    """One picture's state at the last transfer."""
    alive: bool
    bad_step: int  # the step at which it failed (-1: it has not); its last good image is the one after it
    message: str  # why it failed ("" while alive)
    evaluations: int

    @property
    def good_steps(self) -> int:
        """Steps done when its image was last finite (for a failed picture)."""
        return self.bad_step


class Sink:
    """What Telemetry hands out; each method is optional. `alive` says which pictures are still being optimized,
    as of the last transfer (a sink that overrides on_start or on_health calls the base's too)."""

    alive: list[bool]

    def on_start(self, trainer: L.Trainer, module: StyleTransferModule) -> None:
        self.alive = [True] * module.batch_size

    def on_step(self, steps_done: int) -> None: ...

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None: ...

    def on_image(self, steps_done: int, images: torch.Tensor) -> None: ...

    def on_health(self, health: list[Health]) -> None:
        self.alive = [h.alive for h in health]

    def on_end(self) -> None: ...

    def on_outcome(self, parts: Optional[list[dict[str, float]]]) -> None:
        """After on_end: each picture's final float32 loss parts (None when the run stopped before them)."""


class Transfer:
    """A device-to-host copy in flight: pinned memory and an event on a GPU, nothing to wait for on a CPU.

    The copy is registered as a host copy (`is_host_copy`), so that counting tools (nst.bench.counts) can tell
    a read of it, which never waits for the device, from a read of a device tensor."""

    def __init__(self, tensor: torch.Tensor):
        self.event = None
        if tensor.is_cuda:
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = tensor  # already in host memory (and a fresh tensor, which no later step writes to)
        _HOST_COPIES[id(self.host)] = self.host

    def ready(self) -> bool:
        return self.event is None or self.event.query()

    def result(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.host


_HOST_COPIES: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()


def is_host_copy(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a transfer's host copy (reading it waits for nothing on any device)."""
    return _HOST_COPIES.get(id(tensor)) is tensor


@dataclass
class _Batch:
    steps: list[int]  # the recorded steps, in order
    names: list[str]  # the columns of a record (StyleTransferModule.record_names)
    pictures: int
    numbers: Transfer  # [steps x pictures x names] then [pictures x status]
    status: list[str]  # the columns of the pictures' health (StyleTransferModule.status)
    images: list[tuple[int, Transfer]]  # (steps done, [pictures, 3, H, W])


def rows(values: list[float], names: list[str], pictures: int) -> list[dict[str, float]]:
    """A flat [pictures x names] list of numbers as one dict per picture."""
    k = len(names)
    return [dict(zip(names, values[b * k:(b + 1) * k])) for b in range(pictures)]


def health_message(step: int, loss: float) -> str:
    """Why a picture failed: its loss at the start of `step` was not finite, or (with a finite loss) its image
    after that step was not."""
    if math.isfinite(loss):
        return f"the image became NaN/Inf at step {step} (lower optim.lr or the loss weights)"
    return f"loss became {loss} at step {step} (lower optim.lr or the loss weights)"


class Telemetry(L.Callback):
    """`flush_seconds`: at most this long between transfers (None: only at the step counts, so that what is
    transferred when does not depend on the machine's speed; the counting tools use that)."""

    def __init__(self, sinks: list[Sink], flush_seconds: Optional[float] = FLUSH_SECONDS):
        self.sinks = sinks
        self.flush_seconds = flush_seconds
        self.pending: list[_Batch] = []
        self.last_flush = 0.0

    def on_train_start(self, trainer, module) -> None:
        self.last_flush = time.monotonic()
        for sink in self.sinks:
            sink.on_start(trainer, module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        done = trainer.global_step
        for sink in self.sinks:
            sink.on_step(done)
        rec = module.recording
        late = self.flush_seconds is not None and time.monotonic() - self.last_flush > self.flush_seconds
        if done % rec.progress_every == 0 or done >= trainer.max_steps or module.snapshots or trainer.should_stop \
                or late:
            self.send(module)
        self.receive(wait=False)

    def on_train_end(self, trainer, module) -> None:
        self.drain(module)
        for sink in self.sinks:
            sink.on_end()

    def drain(self, module: StyleTransferModule) -> None:
        """Everything recorded so far, now (the end of a run, or before its outputs are written)."""
        if module.records or module.snapshots:
            self.send(module)
        self.receive(wait=True)

    def send(self, module: StyleTransferModule) -> None:
        """Queue one transfer of every recorded number and the health of every picture, and of the images."""
        steps = [s for s, _ in module.records]
        records = [torch.stack([r for _, r in module.records]).flatten()] if module.records else []
        status_names, status = module.status()
        numbers = torch.cat(records + [status.flatten()])
        images = [(done, Transfer(image)) for done, image in module.snapshots]
        module.records.clear()
        module.snapshots.clear()
        names = module.record_names
        self.pending.append(_Batch(steps, names, module.batch_size, Transfer(numbers), status_names, images))
        self.last_flush = time.monotonic()

    def receive(self, wait: bool) -> None:
        while self.pending and (wait or self.pending[0].numbers.ready()):
            batch = self.pending.pop(0)
            self._hand_out(batch, batch.numbers.result().tolist())  # the one read of this transfer

    def _hand_out(self, batch: _Batch, values: list[float]) -> None:
        """Numbers and images in step order (W&B wants steps that never go back), then the health."""
        width = batch.pictures * len(batch.names)
        events: list[tuple[int, int, object]] = [(done, 0, images) for done, images in batch.images]
        events += [(step, 1, values[i * width:(i + 1) * width]) for i, step in enumerate(batch.steps)]
        events.sort(key=lambda e: (e[0], e[1]))
        for step, kind, payload in events:
            if kind == 0:
                images = payload.result()
                for sink in self.sinks:
                    sink.on_image(step, images)
                continue
            for sink in self.sinks:
                sink.on_numbers(step, rows(payload, batch.names, batch.pictures))
        health = []
        for s in rows(values[len(batch.steps) * width:], batch.status, batch.pictures):
            message = "" if s["alive"] else health_message(int(s["bad_step"]), s["bad_loss"])
            health.append(Health(bool(s["alive"]), int(s["bad_step"]), message, int(s["evaluations"])))
        for sink in self.sinks:
            sink.on_health(health)
