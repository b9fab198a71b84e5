"""Progress of a video: frames (frame i/N, seconds per frame, time left) and the steps of the current frame.

On a terminal: a bar over frames and, under it, a bar over the current frame's steps. In a log (or a sweep): one
line per frame, `frame 3/30  1.42 s/frame  39 s left  loss 1.234`. The step bar counts steps on the host and
reads nothing from the device.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

import lightning as L
from tqdm.auto import tqdm

from ..runner.telemetry import Sink
from .job import VideoJob


class FrameProgress:
    def __init__(self, enabled: bool, total: int, done: int, label: Optional[str] = None):
        self.total, self.done = total, done
        self.label = label or "video"
        self.tty = enabled and label is None and sys.stdout.isatty()
        self.bar = (tqdm(total=total, initial=done, desc=self.label, unit="frame", dynamic_ncols=True,
                         file=sys.stdout, position=0, leave=True) if self.tty else None)
        self.steps = None
        self.seconds: list[float] = []
        self.start = time.time()

    def frame_started(self, steps: int) -> None:
        if self.tty:
            self.steps = tqdm(total=steps, desc=f"frame {self.done + 1}/{self.total}", unit="step",
                              dynamic_ncols=True, file=sys.stdout, position=1, leave=False)

    def step(self) -> None:
        if self.steps is not None:
            self.steps.update(1)

    def frames_done(self, n: int, seconds: float, loss: float) -> None:
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        self.done += n
        self.seconds.append(seconds / n)
        recent = self.seconds[-5:] if len(self.seconds) > 1 else self.seconds
        per_frame = sum(recent[1:] if len(recent) > 1 else recent) / max(1, len(recent) - (len(recent) > 1))
        left = per_frame * (self.total - self.done)
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"{seconds / n:.2f} s/frame, loss {loss:.4g}")
        else:
            prefix = f"{self.label}: " if self.label != "video" else ""
            print(f"{prefix}frame {self.done}/{self.total}  {seconds / n:.2f} s/frame  {left:.0f} s left  "
                  f"loss {loss:.4g}", flush=True)

    def close(self) -> None:
        for bar in (self.steps, self.bar):
            if bar is not None:
                bar.close()
        self.steps = self.bar = None


class StepBar(L.Callback):
    """Feeds the frame's step bar from Lightning's step counter."""

    def __init__(self, progress: FrameProgress):
        self.progress = progress

    def on_train_start(self, trainer, module) -> None:
        self.progress.frame_started(trainer.max_steps)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.progress.step()


class VideoWandb(Sink):
    """Each video's W&B run gets its frames' loss parts (the temporal loss among them) at a global step: the steps
    of the frames before this one, plus this frame's step."""

    def __init__(self, group: list[VideoJob], offsets: list[int]):
        self.group, self.offsets = group, offsets

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None:
        for b, (vj, values) in enumerate(zip(self.group, parts)):
            if vj.run is not None and self.alive[b]:
                vj.run.log({**values, "frame": vj.next + 1}, step=self.offsets[b] + step)
