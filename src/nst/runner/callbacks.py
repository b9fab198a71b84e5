"""Callbacks: image grids to W&B, periodic snapshots to disk, progress on a terminal or in a log."""

from __future__ import annotations

import os
import time

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from PIL import Image

from ..files import save_png


def image_grid(images: list[Image.Image], height: int = 256, gap: int = 4) -> Image.Image:
    """Side by side at a common height, on white: content | style | current target."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
              for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for im in scaled:
        grid.paste(im, (x, 0))
        x += im.width + gap
    return grid


class WandbImageGrid(L.Callback):
    """Logs content | style | current target every `every` steps and at the end (uint8 PIL, never float)."""

    def __init__(self, every: int, render):
        self.every = every
        self.render = render  # target tensor -> displayable PIL image (e.g. with colour restored)

    def _log(self, trainer: L.Trainer, module) -> None:
        if trainer.logger is None or not hasattr(trainer.logger, "log_image"):
            return
        height = min(256, module.target.shape[-2])
        grid = image_grid([module.content_image, module.style_images[0], self.render(module.target)], height)
        trainer.logger.log_image(key="progress", images=[grid], step=trainer.global_step,
                                 caption=[f"step {trainer.global_step}: content | style | target"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step
        if self.every and step % self.every == 0 and step < trainer.max_steps:
            self._log(trainer, module)

    def on_train_end(self, trainer, module):
        self._log(trainer, module)


class SnapshotWriter(L.Callback):
    """Writes step_NNNNN.png into the run folder every `every` steps (a time-lapse of the optimization)."""

    def __init__(self, every: int, folder: str, render):
        self.every, self.folder, self.render = every, folder, render

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0:
            save_png(self.render(module.target), os.path.join(self.folder, f"step_{trainer.global_step:05d}.png"))


class StepProgressBar(TQDMProgressBar):
    """One bar over all steps with the current loss; no epochs or version numbers (there are none)."""

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description("stylizing")

    def get_metrics(self, trainer, module):
        metrics = super().get_metrics(trainer, module)
        metrics.pop("v_num", None)
        return metrics


class LineProgress(ProgressBar):
    """Progress for logs and sweeps: a plain line every tenth of the run, where a redrawn bar would pile up.

    A terminal gets StepProgressBar; a log file (stdout not a terminal) or several sweep processes sharing one
    console get this, each line labelled.
    """

    def __init__(self, label: str = "", lines: int = 10):
        super().__init__()
        self.label = f"{label}: " if label else ""
        self.lines = lines
        self.start = 0.0
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer, module):
        self.start = time.time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step, total = trainer.global_step, trainer.max_steps
        if self.enabled and (step % max(1, total // self.lines) == 0 or step == total):
            loss = float(self.get_metrics(trainer, module).get("loss", float("nan")))
            print(f"{self.label}step {step}/{total}  loss {loss:.4g}  {time.time() - self.start:.1f} s", flush=True)
