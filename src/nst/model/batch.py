"""The plain data around a StyleTransferModule (model/module.py): what it is built from (each Picture of the
batch, the optimizer's settings, which steps the host will read: Recording) and what it hands back (Outcome)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from PIL import Image

from .guides import Regions

PROGRESS_LINES = 10  # progress updates per run


@dataclass
class Picture:
    """The inputs of one picture (one row of the batch)."""
    content: Image.Image
    styles: list[Image.Image]
    blend: list[float]  # one weight per style, summing to 1
    init: str | Image.Image | torch.Tensor  # content | noise | style | an image | [1, 3, H, W] (a video frame's)
    seed: int = 0
    style_scale: float = 1.0  # the style images' longest side relative to the target's
    regions: Optional[Regions] = None  # masks: a style per region (model/guides.py) instead of a blend


@dataclass
class OptimizerSettings:
    """The optim.* keys of the config (their defaults are in schema.py, and only there)."""
    name: str  # lbfgs | adam
    lr: float
    history: int  # L-BFGS memory
    line_search_evals: int  # L-BFGS: evaluations a first step may spend on its line search
    carry_history: bool  # L-BFGS: a new scale upsamples the curvature pairs instead of dropping them


@dataclass
class Recording:
    """Which steps' numbers and images the host will want (the rest never leave the device)."""
    max_steps: int
    log_every: int  # W&B loss logs (logger.log_every)
    image_every: int  # W&B image grids (logger.image_every; 0 when not logging)
    save_every: int  # step_NNNNN.png snapshots (output.save_every)

    @property
    def progress_every(self) -> int:
        return max(1, self.max_steps // PROGRESS_LINES)

    def logged(self, step: int) -> bool:
        """Step `step` (0-based, before it runs) goes to W&B."""
        return step % self.log_every == 0 or step + 1 == self.max_steps

    def shown(self, step: int) -> bool:
        """Its numbers update the progress display (named by the step count after it, as Lightning does)."""
        return (step + 1) % self.progress_every == 0 or step + 1 == self.max_steps

    def image_after(self, step: int) -> bool:
        done = step + 1
        return bool((self.image_every and done % self.image_every == 0 and done < self.max_steps)
                    or (self.save_every and done % self.save_every == 0))


@dataclass
class Outcome:
    """What the outputs of a finished run are made of, on the host: read from the device in one transfer at the
    end of training (conclude), before Lightning's teardown moves the module to the CPU."""
    parts: list[dict[str, float]]  # each picture's float32 loss parts at the last scale
    initial_loss: list[Optional[float]]  # the loss before the first step (None when resumed)
    evaluations: list[int]
    images: torch.Tensor  # [B, 3, H, W] on the CPU
    seconds: float  # optimization time, counting the interrupted runs this one resumed
    peak_memory_mb: Optional[int]  # device memory held by tensors at the peak (GPU only)
