"""One style-transfer run from a resolved config: images -> module -> Trainer -> outputs in output.dir."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import lightning as L
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import checkpoint

from ..model import color
from .callbacks import LineProgress, SnapshotWriter, StepProgressBar, WandbImageGrid
from ..config import layers_of, scale_sizes, steps_per_scale, style_paths, to_yaml
from ..errors import ConfigError, OutputError, TrainingError, first_line
from .hardware import resolve_accelerator, resolve_precision, reuse_freed_memory, tune_backends
from ..files import save_json, save_png, save_text
from ..images import MIN_SIDE, fit_size, open_rgb, style_side, to_pil, to_tensor
from .interrupt import Interrupted, SignalGuard, StopOnSignal, signal_name
from ..model.module import Objective, Schedule, StyleTransferModule
from .tracking import finish, make_logger
from ..model.vgg import layer_index, load_vgg19

# Lightning warnings that do not apply to this loop, silenced around fit. A context rather than module-level
# filters, so that it also holds where the filters get reset (pytest, some notebooks).
_NOT_APPLICABLE = (
    # A resumed run starts mid-epoch (the whole run is one epoch), but its batches are step numbers that
    # training_step never reads: there is nothing to resume in the data loader.
    "You're resuming from a checkpoint that ended before the epoch ended",
    r".*module\(s\) in eval mode.*",  # the frozen VGG is in eval mode on purpose
    r".*does not have many workers.*",  # there is no data to load
    r".*isinstance\(treespec, LeafSpec\).*",
)


@contextlib.contextmanager
def quiet_lightning():
    with warnings.catch_warnings():
        for message in _NOT_APPLICABLE:
            warnings.filterwarnings("ignore", message=message)
        yield


logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


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
    style_longest = style_side(min(scale_sizes(cfg)), cfg.data.style_scale)
    for path, style in zip(style_paths(cfg), styles):
        sw, sh = fit_size(style.size, style_longest)
        if min(sw, sh) < MIN_SIDE:
            raise ConfigError(f"data.style_scale: {path} ({style.size[0]}x{style.size[1]}) becomes {sw}x{sh}, "
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


def progress_callback(extra_config: dict | None) -> L.Callback:
    """A redrawn bar on a terminal; plain lines in a log file or in a sweep (several processes, one console)."""
    pair = (extra_config or {}).get("pair")
    if pair is None and sys.stdout.isatty():
        return StepProgressBar()
    return LineProgress(pair["name"] if pair else "")


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
    try:
        return L.Trainer(
            max_steps=cfg.trainer.max_steps, accelerator=accelerator, devices=cfg.trainer.devices,
            precision=resolve_precision(str(cfg.trainer.precision), accelerator),
            logger=logger if logger is not None else False, callbacks=callbacks,
            log_every_n_steps=cfg.trainer.log_every_n_steps, enable_progress_bar=cfg.trainer.enable_progress_bar,
            deterministic=cfg.trainer.deterministic, enable_checkpointing=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=cfg.output.dir)
    except Exception as e:  # Lightning rejecting trainer.* values (an accelerator this machine lacks, ...)
        raise ConfigError(f"trainer: {first_line(e)}") from None


def resume_checkpoint(cfg: DictConfig, module: StyleTransferModule) -> str | None:
    """resume=true: the checkpoint to continue from, checked against this config before anything is written."""
    path = checkpoint.path_in(cfg.output.dir)
    if not cfg.resume:
        if os.path.exists(path) and not os.path.exists(os.path.join(cfg.output.dir, "final.png")):
            warnings.warn(f"{path} is from an earlier run and will be replaced; add resume=true to continue "
                          f"that run instead", stacklevel=3)
        return None
    checkpoint.check_resumable(checkpoint.load(path), path, module, cfg.trainer.max_steps)
    return path


def run(cfg: DictConfig, extra_config: dict | None = None) -> RunResult:
    """Optimize one image as `cfg` says and write final.png, config.yaml, metrics.json and last.ckpt to output.dir.

    Bad input (files, images, weights, config values, the checkpoint to resume) is reported before output.dir
    is created. Ctrl-C or SIGTERM raises Interrupted after writing interrupted.png, config.yaml and last.ckpt;
    a non-finite loss raises TrainingError after writing last_good.png (docs/reliability.md).
    """
    with SignalGuard() as guard:
        return _run(cfg, extra_config, guard)


def _run(cfg: DictConfig, extra_config: dict | None, guard: SignalGuard) -> RunResult:
    start = time.time()
    L.seed_everything(cfg.seed, verbose=False)
    run_dir = cfg.output.dir
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    inputs = prepare_inputs(cfg)
    module = build_module(cfg, inputs)
    ckpt_path = resume_checkpoint(cfg, module)
    callbacks = [WandbImageGrid(cfg.logger.image_every, inputs.render), StopOnSignal(guard)]
    if cfg.trainer.enable_progress_bar:
        callbacks.append(progress_callback(extra_config))
    if cfg.output.save_every:
        callbacks.append(SnapshotWriter(cfg.output.save_every, run_dir, inputs.render))
    trainer = make_trainer(cfg, None, callbacks)
    check_writable(run_dir)
    logger = make_logger(cfg, run_dir, extra_config)
    try:
        trainer.logger = logger
        try:
            guard.phase = "step"
            with quiet_lightning(), reuse_freed_memory(accelerator == "cpu"):
                trainer.fit(module, train_dataloaders=DataLoader(Steps(cfg.trainer.max_steps), batch_size=None),
                            ckpt_path=ckpt_path, weights_only=True)
            guard.phase = "hold"
        except Interrupted as e:  # a second signal: the step in progress was cut short
            guard.phase = "hold"
            raise _interrupted(cfg, module, inputs, trainer, e.signum, cut_short=True) from None
        except TrainingError as e:
            guard.phase = "hold"
            path = os.path.join(run_dir, "last_good.png")
            save_png(inputs.render(module.last_good), path)
            raise TrainingError(f"{e}; the last good image (after {module.good_steps} steps) is in {path}") from None
        if guard.requested and trainer.global_step < cfg.trainer.max_steps:
            raise _interrupted(cfg, module, inputs, trainer, guard.signum, cut_short=False)
        seconds = module.optimize_seconds
        image = inputs.render(module.target)
        final = module.evaluate()
        metrics = {**final, "initial_loss": module.initial_loss, "steps": int(trainer.global_step),
                   "evaluations": module.evaluations,
                   "seconds": round(seconds, 3), "total_seconds": round(time.time() - start, 3),
                   "size": [image.height, image.width],
                   "precision": resolve_precision(str(cfg.trainer.precision), accelerator)}
        save_png(image, os.path.join(run_dir, "final.png"))
        save_text(to_yaml(cfg), os.path.join(run_dir, "config.yaml"))
        save_json(metrics, os.path.join(run_dir, "metrics.json"))
        if cfg.output.checkpoint:
            checkpoint.save(trainer, checkpoint.path_in(run_dir))
        if logger is not None:
            log_final(logger, run_dir, metrics)
    except OutputError as e:  # disk full, permissions: name the setting to change
        raise OutputError(f"output.dir: {e}") from None
    finally:
        finish(logger)
    if guard.requested:
        raise Interrupted(guard.signum, f"interrupted by {signal_name(guard.signum)} after the run finished; "
                                        f"all outputs are in {run_dir}")
    return RunResult(image, metrics, run_dir)


def _interrupted(cfg: DictConfig, module: StyleTransferModule, inputs: Inputs, trainer: L.Trainer, signum: int,
                 cut_short: bool) -> Interrupted:
    """Keep the image and (at a step boundary) a checkpoint; the exception says what was kept and how to go on."""
    run_dir, name = cfg.output.dir, signal_name(signum)
    image_path = os.path.join(run_dir, "interrupted.png")
    save_text(to_yaml(cfg), os.path.join(run_dir, "config.yaml"))
    resume = f"resume with: python train.py --config {os.path.join(run_dir, 'config.yaml')} resume=true"
    if cut_short:  # the optimizer may be half way through a step: its state is not worth keeping
        save_png(inputs.render(module.last_good), image_path)
        old = checkpoint.path_in(run_dir)
        tail = (f"; {old} is from an earlier step, {resume}" if os.path.exists(old)
                else "; no checkpoint was written (interrupted twice)")
        return Interrupted(signum, f"interrupted by {name} during step {module.good_steps + 1}: wrote {image_path} "
                                   f"(after {module.good_steps} steps){tail}")
    save_png(inputs.render(module.target), image_path)
    ckpt = checkpoint.path_in(run_dir)
    checkpoint.save(trainer, ckpt)
    return Interrupted(signum, f"interrupted by {name} at step {trainer.global_step}/{cfg.trainer.max_steps}: "
                               f"wrote {image_path} and {ckpt}; {resume}")


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
