"""One style-transfer run from a resolved config: images -> module -> Trainer -> outputs in output.dir."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import lightning as L
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import color
from .callbacks import SnapshotWriter, WandbImageGrid
from .config import layers_of, scale_sizes, steps_per_scale, style_paths, to_yaml
from .errors import ConfigError
from .hardware import resolve_accelerator, resolve_precision, tune_backends
from .images import MIN_SIDE, fit_size, open_rgb, save_json, save_png, save_text, to_pil, to_tensor
from .module import Objective, Schedule, StyleTransferModule
from .tracking import finish, make_logger
from .vgg import layer_index, load_vgg19


class Steps(Dataset):
    """N empty batches: the image is the only thing trained, so there is no data to load."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


@dataclass
class RunResult:
    image: Image.Image
    metrics: dict
    run_dir: str


@dataclass
class Inputs:
    """The images as the optimization sees them, and how to turn its target back into a picture."""
    content: Image.Image
    styles: list[Image.Image]
    init: str | Image.Image
    render: Callable[[torch.Tensor], Image.Image]


def prepare_inputs(cfg: DictConfig) -> Inputs:
    """Read the images and apply the colour mode: everything that happens before optimization."""
    content = open_rgb(cfg.data.content)
    styles = [open_rgb(p) for p in style_paths(cfg)]
    init: str | Image.Image = cfg.init if cfg.init in ("content", "noise", "style") else open_rgb(cfg.init)
    w, h = fit_size(content.size, min(scale_sizes(cfg)))
    if min(w, h) < MIN_SIDE:
        raise ConfigError(f"data.size: {cfg.data.content} ({content.size[0]}x{content.size[1]}) becomes {w}x{h}, "
                          f"too small for VGG19 (each side needs at least {MIN_SIDE} px)")
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


def build_module(cfg: DictConfig, inputs: Inputs) -> StyleTransferModule:
    content_layers, style_layers = layers_of(cfg)
    deepest = max(content_layers + style_layers, key=layer_index)
    extractor = load_vgg19(cfg.model.weights, cfg.model.pooling, deepest, cfg.seed)
    lw = list(cfg.model.style_layer_weights or [1.0] * len(style_layers))
    total = sum(lw) or 1.0
    objective = Objective(content_layers, style_layers, [w / total for w in lw], cfg.loss.content_weight,
                          cfg.loss.style_weight, cfg.loss.tv_weight, cfg.loss.normalize)
    blend = list(cfg.data.style_weights or [1.0] * len(inputs.styles))
    return StyleTransferModule(extractor, inputs.content, inputs.styles, blend, objective,
                               Schedule(scale_sizes(cfg), steps_per_scale(cfg)), inputs.init,
                               cfg.optim.name, cfg.optim.lr, cfg.optim.history, cfg.data.style_scale,
                               cfg.seed, cfg.logger.log_every)


def check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output.dir: cannot write to {folder} ({e.strerror or e})") from None


def make_trainer(cfg: DictConfig, logger, callbacks: list) -> L.Trainer:
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    tune_backends(accelerator)
    return L.Trainer(
        max_steps=cfg.trainer.max_steps, accelerator=accelerator, devices=cfg.trainer.devices,
        precision=resolve_precision(str(cfg.trainer.precision), accelerator),
        logger=logger if logger is not None else False, callbacks=callbacks,
        log_every_n_steps=cfg.trainer.log_every_n_steps, enable_progress_bar=cfg.trainer.enable_progress_bar,
        deterministic=cfg.trainer.deterministic, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=cfg.output.dir)


def run(cfg: DictConfig, extra_config: dict | None = None) -> RunResult:
    """Optimize one image as `cfg` says and write final.png, config.yaml and metrics.json to output.dir."""
    start = time.time()
    L.seed_everything(cfg.seed, verbose=False)
    run_dir = cfg.output.dir
    inputs = prepare_inputs(cfg)
    module = build_module(cfg, inputs)
    check_writable(run_dir)
    logger = make_logger(cfg, run_dir, extra_config)
    try:
        callbacks = [WandbImageGrid(cfg.logger.image_every, inputs.render)]
        if cfg.output.save_every:
            callbacks.append(SnapshotWriter(cfg.output.save_every, run_dir, inputs.render))
        trainer = make_trainer(cfg, logger, callbacks)
        optimize_start = time.time()
        trainer.fit(module, train_dataloaders=DataLoader(Steps(cfg.trainer.max_steps), batch_size=None))
        seconds = time.time() - optimize_start
        image = inputs.render(module.target)
        final = module.evaluate()
        metrics = {**final, "initial_loss": module.initial_loss, "steps": int(trainer.global_step),
                   "evaluations": module.evaluations,
                   "seconds": round(seconds, 3), "total_seconds": round(time.time() - start, 3),
                   "size": [image.height, image.width],
                   "precision": resolve_precision(str(cfg.trainer.precision), resolve_accelerator(cfg.trainer.accelerator))}
        save_png(image, os.path.join(run_dir, "final.png"))
        save_text(to_yaml(cfg), os.path.join(run_dir, "config.yaml"))
        save_json(metrics, os.path.join(run_dir, "metrics.json"))
        if logger is not None:
            log_final(logger, run_dir, metrics)
    finally:
        finish(logger)
    return RunResult(image, metrics, run_dir)


def log_final(logger, run_dir: str, metrics: dict) -> None:
    """Summary numbers for dashboard tables, and the final image as a versioned artifact."""
    import wandb
    run = logger.experiment
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            run.summary[f"final/{key}"] = value
    artifact = wandb.Artifact(f"final-{run.id}", type="image")
    artifact.add_file(os.path.join(run_dir, "final.png"))
    run.log_artifact(artifact)
