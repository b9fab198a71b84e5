"""What a run does with the numbers and images that Telemetry brings from the device: W&B logs and image grids,
step_NNNNN.png snapshots, and the progress display (a bar on a terminal, plain lines in a log)."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import Future
from typing import Callable, Optional

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..files import save_png
from ..model.tiling import blocks_per_evaluation
from . import wandb
from .telemetry import Sink

Render = Callable[[torch.Tensor], Image.Image]  # a target row [1, 3, H, W] -> the picture it stands for


def image_grid(images: list[Image.Image], height: int = 256, gap: int = 4) -> Image.Image:
    """Side by side at a common height, on white: content | style | current target.

    Pasted by hand, not torchvision.utils.make_grid: that needs equal sizes, and these differ in width."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
              for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for im in scaled:
        grid.paste(im, (x, 0))
        x += im.width + gap
    return grid


class WandbSink(Sink):
    """Each picture's W&B run gets its loss parts at the logged steps and content | style | target grids.

    A run may still be starting (a Future: the first steps do not wait for W&B); what it should log waits in a
    queue until the run is there."""

    def __init__(self, runs: list, renders: list[Render], contents: list[Image.Image], styles: list[Image.Image],
                 logged: Callable[[int], bool], scale_of: Callable[[int], int]):
        self.runs, self.renders, self.contents, self.styles = runs, renders, contents, styles
        self.logged, self.scale_of = logged, scale_of
        self.queued: list[list[tuple[dict, int]]] = [[] for _ in runs]
        self.minimum = [float("inf")] * len(runs)  # each picture's lowest logged loss: summary min_loss

    def send(self, b: int, data: dict, step: int, wait: bool = False) -> None:
        self.queued[b].append((data, step))
        if wait or not isinstance(self.runs[b], Future) or self.runs[b].done():
            self.ready(b)

    def ready(self, b: int):
        """Picture b's run, once started, with everything queued for it logged."""
        if isinstance(self.runs[b], Future):
            self.runs[b] = self.runs[b].result()
        lowest = self.minimum[b]
        for data, step in self.queued[b]:
            wandb.log(self.runs[b], data, step)
            if data.get("loss", lowest) < self.minimum[b]:  # (NaN is never lower)
                self.minimum[b] = data["loss"]
        self.queued[b].clear()
        if self.minimum[b] < lowest:
            wandb.summarize(self.runs[b], {"min_loss": self.minimum[b]})
        return self.runs[b]

    def on_end(self) -> None:
        """What is still queued for a run that was starting, logged: an interrupted run keeps its history too."""
        for b, queued in enumerate(self.queued):
            if queued and self.runs[b] is not None:
                try:
                    self.ready(b)
                except Exception:  # the run never started: finish() and the outputs say what there is to say
                    queued.clear()

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None:
        if not self.logged(step):
            return
        for b, (run, values) in enumerate(zip(self.runs, parts)):
            if run is not None and self.alive[b]:
                self.send(b, {**values, "scale": float(self.scale_of(step))}, step)

    def on_image(self, steps_done: int, images: torch.Tensor) -> None:
        for b, run in enumerate(self.runs):
            if run is not None and self.alive[b]:
                self.log_grid(b, self.renders[b](images[b:b + 1]), steps_done)

    def log_grid(self, b: int, result: Image.Image, steps_done: int, wait: bool = False) -> None:
        grid = image_grid([self.contents[b], self.styles[b], result], min(256, result.height))
        self.send(b, {"progress": wandb.image(grid, f"step {steps_done}: content | style | target")},
                  steps_done, wait)



class SnapshotSink(Sink):
    """step_NNNNN.png in each picture's folder every `every` steps: a time-lapse of the optimization."""

    def __init__(self, every: int, folders: list[str], renders: list[Render]):
        self.every, self.folders, self.renders = every, folders, renders

    def on_image(self, steps_done: int, images: torch.Tensor) -> None:
        if steps_done % self.every:
            return
        for b, folder in enumerate(self.folders):
            if self.alive[b]:
                save_png(self.renders[b](images[b:b + 1]), os.path.join(folder, f"step_{steps_done:05d}.png"))



def blocks_at(module) -> Callable[[int], int]:
    """The blocks an evaluation takes at a step's scale (1: whole), for the progress display of a tiled run."""
    blocks = blocks_per_evaluation(module.tiling, [module.size_hw(s) for s in range(len(module.schedule.sizes))])
    return lambda step: blocks[module.schedule.scale_at(step)]


def _mean_loss(parts: list[dict[str, float]], alive: list[bool]) -> float:
    losses = [p["loss"] for p, ok in zip(parts, alive) if ok]
    return sum(losses) / len(losses) if losses else float("nan")


class ProgressBar(Sink):
    """One bar over all steps on a terminal; the loss (the batch's mean) updates with each transfer, and a tiled
    scale shows its blocks per evaluation."""

    def __init__(self, label: str = "stylizing"):
        self.label = label
        self.bar = None
        self.done = 0
        self.blocks: Callable[[int], int] = lambda step: 1

    def on_start(self, trainer, module) -> None:
        super().on_start(trainer, module)
        self.done = trainer.global_step
        self.blocks = blocks_at(module)
        self.bar = tqdm(total=trainer.max_steps, initial=self.done, desc=self.label, dynamic_ncols=True,
                        file=sys.stdout, leave=True, unit="step")

    def on_step(self, steps_done: int) -> None:
        if self.bar is not None:
            self.bar.update(steps_done - self.done)
            self.done = steps_done

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None:
        if self.bar is not None:
            self.show(parts, step)

    def show(self, parts: list[dict[str, float]], step: int) -> None:
        """The loss, and the blocks per evaluation at the step's scale where it is tiled (drawn at the next
        refresh, which tqdm times itself)."""
        blocks = self.blocks(step)
        self.bar.set_postfix(loss=f"{_mean_loss(parts, self.alive):.4g}", refresh=False,
                             **({"blocks": blocks} if blocks > 1 else {}))

    def on_outcome(self, parts: Optional[list[dict[str, float]]]) -> None:
        """The bar ends on the final loss, the number the run's last line and metrics.json give (and the last
        scale's blocks)."""
        if self.bar is not None:
            if parts is not None:
                self.show(parts, max(self.done - 1, 0))
            self.bar.close()
            self.bar = None


class ProgressLines(Sink):
    """Progress for logs and sweeps: `step 20/200  loss 1.234  5.1 s` every tenth of the run, where a redrawn
    bar would pile up (`  12 blocks` after it at a tiled scale). A batch shows its mean loss; in a sweep each line
    is labelled."""

    def __init__(self, shown: Callable[[int], bool], label: str = ""):
        self.shown = shown
        self.label = f"{label}: " if label else ""
        self.start = 0.0
        self.total = 0
        self.blocks: Callable[[int], int] = lambda step: 1

    def on_start(self, trainer, module) -> None:
        super().on_start(trainer, module)
        self.start = time.time()
        self.total = trainer.max_steps
        self.blocks = blocks_at(module)

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None:
        if self.shown(step):
            blocks = self.blocks(step)
            print(f"{self.label}step {step + 1}/{self.total}  loss {_mean_loss(parts, self.alive):.4g}  "
                  f"{time.time() - self.start:.1f} s" + (f"  {blocks} blocks" if blocks > 1 else ""), flush=True)



def progress_sink(enabled: bool, shown: Callable[[int], bool], label: Optional[str]) -> Optional[Sink]:
    """A redrawn bar on a terminal; plain lines in a log file or in a sweep (several processes, one console)."""
    if not enabled:
        return None
    if label is None and sys.stdout.isatty():
        return ProgressBar()
    return ProgressLines(shown, label or "")


class Convergence(Sink):
    """trainer.tolerance: stops the Trainer once, at the last scale, every live picture's loss has fallen by less
    than `tolerance` (a fraction) over the last `patience` steps. It judges the numbers as they reach the host,
    so the run ends a transfer or so after the step that met the rule."""

    def __init__(self, tolerance: float, patience: int, last_scale_from: int):
        self.tolerance, self.patience, self.start = tolerance, patience, last_scale_from
        self.history: list[list[tuple[int, float]]] = []
        self.trainer = None

    def on_start(self, trainer, module) -> None:
        super().on_start(trainer, module)
        self.trainer = trainer
        self.history = [[] for _ in range(module.batch_size)]

    def on_numbers(self, step: int, parts: list[dict[str, float]]) -> None:
        if step < self.start:
            return
        for seen, values in zip(self.history, parts):
            seen.append((step, values["loss"]))
        if all(self._flat(seen) for seen, ok in zip(self.history, self.alive) if ok) and any(self.alive):
            self.trainer.should_stop = True

    def _flat(self, seen: list[tuple[int, float]]) -> bool:
        step, loss = seen[-1]
        before = [value for s, value in seen if s <= step - self.patience]
        return bool(before) and before[-1] - loss < self.tolerance * abs(before[-1])

