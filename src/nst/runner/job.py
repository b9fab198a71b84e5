"""One picture to make: its config and folder, its images as the optimization sees them, the checkpoint it
resumes from, its W&B run, and how it ended. Everything that can be wrong with a picture's input is found
in `prepare`, before its output folder exists."""

from __future__ import annotations

import copy
import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ..config import scale_sizes, style_paths, to_yaml
from ..schema import INITS
from ..errors import ConfigError, OutputError
from ..files import save_png, say_replaced
from ..images import MIN_SIDE, fit_size, open_rgb, style_side, to_pil, to_tensor
from ..keys import objective_settings
from .. import masks
from ..model import color
from ..model.guides import Regions
from ..model.batch import Picture
from ..model.schedule import Schedule
from . import checkpoint
from .settings import Settings, settings_of


@dataclass
class Inputs:
    """The images as the optimization sees them, and how to turn its target back into a picture."""
    content: Image.Image
    styles: list[Image.Image]
    init: str | Image.Image | torch.Tensor
    render: Callable[[torch.Tensor], Image.Image]
    regions: Optional[Regions] = None  # masks: a style per region (nst/masks.py)


@dataclass
class RunResult:
    image: Image.Image
    metrics: dict
    run_dir: str


@dataclass
class Job:
    cfg: DictConfig
    extra_config: Optional[dict] = None
    inputs: Optional[Inputs] = None
    resume_step: int = 0  # > 0: continue from the checkpoint in cfg.output.dir
    run: object = None  # the W&B run, once started
    started: float = field(default_factory=time.time)
    error: str = ""  # why it failed
    result: Optional[RunResult] = None
    # Values config.yaml records instead of the run's own: a sweep pins each pair's device (trainer.accelerator,
    # trainer.devices), and its config.yaml keeps the sweep's values, so that repeating it works on another machine.
    written: dict = field(default_factory=dict)

    def config_yaml(self) -> str:
        """config.yaml: the run's config, with `written`'s values."""
        cfg = self.cfg
        if self.written:
            cfg = copy.deepcopy(cfg)
            for key, value in self.written.items():
                OmegaConf.update(cfg, key, value, merge=False)
        return to_yaml(cfg)

    @property
    def dir(self) -> str:
        return self.cfg.output.dir

    @cached_property
    def settings(self) -> Settings:
        """The run's settings, resolved from its config once (runner/settings.py)."""
        return settings_of(self.cfg)

    def sizes(self) -> tuple[tuple[int, int], ...]:
        """(height, width) at every scale: pictures with the same sizes can share a batch."""
        return tuple(fit_size(self.inputs.content.size, s)[::-1] for s in self.settings.sizes)

    def inputs_record(self) -> dict:
        """What the picture's objective is made of, for its checkpoint: digests of the content and style images as
        the optimization sees them, and the settings that change the loss (runner/checkpoint.check_inputs)."""
        return {"content": digest(self.inputs.content), "styles": [digest(s) for s in self.inputs.styles],
                "settings": objective_settings(self.cfg)}

    def picture(self) -> Picture:
        blend = list(self.cfg.data.style_weights or [1.0] * len(self.inputs.styles))
        return Picture(self.inputs.content, self.inputs.styles, [w / sum(blend) for w in blend], self.inputs.init,
                       self.cfg.seed, self.cfg.data.style_scale, self.inputs.regions)


def digest(image: Image.Image) -> str:
    h = hashlib.sha256(f"{image.mode} {image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:16]


def prepare_inputs(cfg: DictConfig, content: Optional[Image.Image] = None,
                   styles: Optional[list[Image.Image]] = None) -> Inputs:
    """Read the images and apply the colour mode: everything that happens before optimization. A video passes
    its frame as `content` (and its style images, read once) instead of the files of data.content and data.style."""
    content = open_rgb(cfg.data.content) if content is None else content
    styles = [open_rgb(p) for p in style_paths(cfg)] if styles is None else styles
    init: str | Image.Image = cfg.init if cfg.init in INITS else open_rgb(cfg.init)
    smallest = min(scale_sizes(cfg))
    w, h = fit_size(content.size, smallest)
    if min(w, h) < MIN_SIDE:
        raise ConfigError(f"data.size: {cfg.data.content} ({content.size[0]}x{content.size[1]}) becomes {w}x{h}, "
                          f"too small for VGG19 (each side needs at least {MIN_SIDE} px)")
    style_longest = style_side(smallest, cfg.data.style_scale)
    for path, style in zip(style_paths(cfg), styles):
        sw, sh = fit_size(style.size, style_longest)
        if min(sw, sh) < MIN_SIDE:
            raise ConfigError(f"data.style_scale: {path} ({style.size[0]}x{style.size[1]}) becomes {sw}x{sh}, "
                              f"too small for VGG19 (each side needs at least {MIN_SIDE} px)")
    inputs = _colour(cfg, content, styles, init)
    inputs.regions = masks.load(cfg.masks, content, styles)
    return inputs


def _colour(cfg: DictConfig, content: Image.Image, styles: list[Image.Image], init: str | Image.Image) -> Inputs:
    """The images the optimization sees under color.preserve, and the render that makes its target a picture."""
    mode = cfg.color.preserve
    if mode == "none":
        return Inputs(content, styles, init, to_pil)
    content_t = to_tensor(content)
    if mode == "histogram":
        styles = [to_pil(color.match_color(to_tensor(s), content_t)) for s in styles]
        return Inputs(content, styles, init, to_pil)
    # luminance: optimize grey images, then put the content's chroma back.
    content_y = color.luminance(content_t)
    styles = [to_pil(color.gray3(color.match_luminance(color.luminance(to_tensor(s)), content_y))) for s in styles]
    gray_content = to_pil(color.gray3(content_y))
    if isinstance(init, Image.Image):
        init = to_pil(color.gray3(color.luminance(to_tensor(init))))
    return Inputs(gray_content, styles, init,
                  lambda t: to_pil(color.restore_chroma(t.detach().float().cpu(), content_t)))


# What a run writes in output.dir (what a fresh run into the same folder replaces)
IMAGE_OUTPUTS = ("final.png", "metrics.json", "last.ckpt")


def prepare(job: Job) -> Job:
    """Read the job's images and check the checkpoint it resumes from (UserError when either is unusable)."""
    cfg = job.cfg
    job.inputs = prepare_inputs(cfg)
    path = checkpoint.path_in(cfg.output.dir)
    if not cfg.resume:
        say_replaced(cfg.output.dir, IMAGE_OUTPUTS)
        return job
    sizes = job.sizes()
    schedule = Schedule(list(job.settings.sizes), list(job.settings.steps))
    # the image after `step` steps has the size of the scale of the last step done
    saved = checkpoint.load(path)
    job.resume_step = checkpoint.check_resumable(saved, path, cfg.optim.name, cfg.trainer.max_steps,
                                                 lambda step: sizes[schedule.scale_at(max(step - 1, 0))])
    unchecked = checkpoint.check_inputs(saved, path, job.inputs_record(), force=cfg.resume == "force")
    if unchecked:
        warnings.warn(unchecked, stacklevel=3)
    return job


def keep_pictures(jobs: list[Job], images: list[Image.Image], step: int, error: OutputError) -> OutputError:
    """After a write failed during the run (a full disk): each picture's interrupted.png, where it can still be
    written. The checkpoint that was being replaced is whole (writes are atomic); the error says what was kept."""
    kept = []
    for job, image in zip(jobs, images):
        try:
            save_png(image, os.path.join(job.dir, "interrupted.png"))
            kept.append(os.path.join(job.dir, "interrupted.png"))
        except OutputError:
            pass
    if len(jobs) == 1:
        old = checkpoint.path_in(jobs[0].dir)
        tail = f"; {old} is from an earlier step" if os.path.exists(old) else ""
        what = f"the image after {step} steps is in {kept[0]}{tail}" if kept else "no image could be written either"
    else:
        what = f"interrupted.png (after {step} steps) written for {len(kept)} of {len(jobs)} pictures"
    return OutputError(f"{error}; {what}")
