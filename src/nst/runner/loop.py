"""The fit seam: every optimization (an image run or a sweep's batch, runner/run.py; a video's frame,
video/run.py; the benchmarks that time or count the loop) builds its module and Trainer here and calls `fit`.

`fit` is the one place that calls Lightning's `trainer.fit`: with the warnings that do not apply to this loop
silenced, and on the CPU with freed memory kept for the next pass. The Trainer's callbacks read everything
the outputs need from the device before Lightning's teardown moves the module to the CPU (Conclude).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ..config import layers_of
from ..errors import ConfigError, first_line
from ..files import save_text
from ..model.batch import OptimizerSettings, Recording
from ..model.module import StyleTransferModule
from ..model.schedule import Schedule
from ..model.loss import LossSettings
from ..model.vgg import layer_index, load_vgg19
from .. import masks
from . import checkpoint, tiles
from .hardware import check_accelerator, reuse_freed_memory, tune_backends
from .interrupt import SignalGuard, StopOnSignal
from .job import Job, prepare
from .sinks import Convergence, SnapshotSink, WandbSink, progress_sink
from .telemetry import FLUSH_SECONDS, Health, Sink, Telemetry
from .wandb import resolve_mode, saved_id

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


def quiet_device_lines() -> None:
    """Lightning's device lines ("GPU available: ...", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]") are not ours to
    print. Set by the entry points (cli.main, the sweep's main, api.stylize, the benchmarks that fit), not when
    this module is imported: logging is the application's to configure."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def quiet_lightning():
    with warnings.catch_warnings():
        for message in _NOT_APPLICABLE:
            warnings.filterwarnings("ignore", message=message)
        yield


class Steps(Dataset):
    """N empty batches: the image is the only thing trained, so there is no data to load."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def fit(trainer: L.Trainer, module: StyleTransferModule, ckpt_path: Optional[str] = None) -> None:
    """trainer.fit over trainer.max_steps empty batches (continuing from the checkpoint at `ckpt_path`)."""
    with quiet_lightning(), reuse_freed_memory(isinstance(trainer.accelerator, CPUAccelerator)):
        trainer.fit(module, train_dataloaders=steps_loader(trainer.max_steps), ckpt_path=ckpt_path,
                    weights_only=True)


def build_module(jobs: list[Job], extractor=None, temporal_weight: float = 0.0,
                 style_grams: Optional[dict] = None) -> StyleTransferModule:
    """The module for a batch of prepared jobs. A video reuses one `extractor` and one cache of `style_grams` for
    all its frames and gives its frames a temporal loss (`temporal_weight`; nst.video.run)."""
    cfg, settings = jobs[0].cfg, jobs[0].settings
    content_layers, style_layers = layers_of(cfg)
    deepest = max(content_layers + style_layers, key=layer_index)
    if extractor is None:
        extractor = load_vgg19(cfg.model.weights, cfg.model.pooling, deepest, cfg.seed)
    lw = list(cfg.model.style_layer_weights or [1.0] * len(style_layers))
    total = sum(lw) or 1.0
    loss = LossSettings(content_layers, style_layers, [w / total for w in lw], cfg.loss.content_weight,
                        cfg.loss.style_weight, cfg.loss.tv_weight, cfg.loss.normalize, temporal_weight,
                        regions=len(jobs[0].inputs.regions.content) if jobs[0].inputs.regions else 0)
    optimizer = OptimizerSettings(**cfg.optim)
    recording = Recording(cfg.trainer.max_steps, cfg.logger.log_every,
                          image_every=cfg.logger.image_every if resolve_mode(cfg.logger.mode) != "disabled" else 0,
                          save_every=cfg.output.save_every)
    tiling = tiles.choose(cfg, list(jobs[0].sizes()), len(jobs))
    line = tiles.describe(tiling, list(jobs[0].sizes()))
    if line and cfg.trainer.enable_progress_bar:
        print(line, file=sys.stderr, flush=True)
    return StyleTransferModule(extractor=extractor, pictures=[job.picture() for job in jobs], loss=loss,
                               schedule=Schedule(list(settings.sizes), list(settings.steps)), optimizer=optimizer,
                               recording=recording, tiling=tiling, style_grams=style_grams)


def module_for(cfg: DictConfig) -> StyleTransferModule:
    """The module of a one-picture run of `cfg` (for tools and tests that look inside)."""
    return build_module([prepare(Job(cfg))])


def loop_for(cfg: DictConfig, callbacks: Sequence[L.Callback] = (), checkpoints: bool = False,
             flush_seconds: Optional[float] = FLUSH_SECONDS) -> tuple[StyleTransferModule, L.Trainer]:
    """The module and Trainer of a one-picture run of `cfg` with more callbacks, for tools that time or count the
    training loop itself (`fit(trainer, module)`). Nothing is written unless
    `checkpoints` (the periodic ones, into output.dir); `flush_seconds=None` makes Telemetry's transfers
    independent of the machine's speed."""
    cfg = copy.deepcopy(cfg)
    if not checkpoints:
        cfg.output.checkpoint_every = 0
    job = prepare(Job(cfg))
    module = build_module([job])
    trainer, *_ = make_trainer(cfg, [job], module, SignalGuard(), None, callbacks, flush_seconds)
    return module, trainer


def steps_loader(n: int) -> DataLoader:
    return DataLoader(Steps(n), batch_size=None)


class FailureWatch(Sink):
    """Keeps each picture's latest health; stops the Trainer once no picture is left to optimize."""

    def __init__(self, n: int):
        self.health: list[Optional[Health]] = [None] * n
        self.trainer: Optional[L.Trainer] = None

    def on_start(self, trainer, module) -> None:
        super().on_start(trainer, module)
        self.trainer = trainer

    def on_health(self, health: list[Health]) -> None:
        super().on_health(health)
        self.health = health
        if self.trainer is not None and not any(self.alive):
            self.trainer.should_stop = True

    def is_alive(self, b: int) -> bool:
        return self.health[b] is None or self.health[b].alive


class Conclude(L.Callback):
    """At the end of training, while the module is still on its device: everything the outputs need from it, in
    one transfer (StyleTransferModule.conclude). Lightning's teardown then moves the module to the CPU before
    `fit` returns, and nothing after `fit` computes on it. Skipped when a signal stopped the run early (its
    outputs are interrupted.png and a checkpoint) or every picture failed. L-BFGS's state goes in any case."""

    def __init__(self, guard: SignalGuard, watch: "FailureWatch", sinks: Sequence[Sink] = ()):
        self.guard, self.watch, self.sinks = guard, watch, sinks

    def on_train_start(self, trainer, module) -> None:
        if module.device.type == "cuda":  # peak_memory_mb: this run's own peak, on its own device
            torch.cuda.reset_peak_memory_stats(module.device)

    def on_train_end(self, trainer, module) -> None:
        stopped_early = self.guard.requested and trainer.global_step < trainer.max_steps
        outcome = None
        if not stopped_early and any(self.watch.is_alive(b) for b in range(module.batch_size)):
            outcome = module.conclude()
        module.free_lbfgs_state()
        for sink in self.sinks:  # the progress bar ends on the final loss
            sink.on_outcome(outcome.parts if outcome is not None else None)


class KeepOnDevice(L.Callback):
    """Takes the named submodules out of the module once training ends (after Conclude), so that Lightning's
    teardown, which moves the module to the CPU, leaves them on their device: a video's frames share its VGG19,
    and the next frame's setup finds it where it is. The module is only read for its outcome after that."""

    def __init__(self, *names: str):
        self.names = names

    def on_train_end(self, trainer, module) -> None:
        for name in self.names:
            delattr(module, name)  # nn.Module drops the submodule


def make_trainer(cfg: DictConfig, jobs: list[Job], module: StyleTransferModule, guard: SignalGuard,
                 label: Optional[str], extra_callbacks: Sequence[L.Callback] = (),
                 flush_seconds: Optional[float] = FLUSH_SECONDS, extra_sinks: Sequence[Sink] = ()
                 ) -> tuple[L.Trainer, FailureWatch, Optional[WandbSink]]:
    settings = jobs[0].settings
    accelerator = settings.accelerator
    check_accelerator(accelerator, cfg.optim.name)
    tune_backends(accelerator, cfg.trainer.cudnn_benchmark)
    renders = [job.inputs.render for job in jobs]
    watch = FailureWatch(len(jobs))
    sinks: list[Sink] = [watch]
    wandb = WandbRuns(jobs, renders, module) if resolve_mode(cfg.logger.mode) != "disabled" else None
    if wandb is not None:
        sinks.append(wandb)
    if cfg.output.save_every:
        sinks.append(SnapshotSink(cfg.output.save_every, [job.dir for job in jobs], renders))
    if cfg.trainer.tolerance > 0:
        sinks.append(Convergence(cfg.trainer.tolerance, cfg.trainer.patience, sum(module.schedule.steps[:-1])))
    progress = progress_sink(cfg.trainer.enable_progress_bar, module.recording.shown, label)
    if progress is not None:
        sinks.append(progress)
    sinks.extend(extra_sinks)  # a video's W&B run and progress (nst.video.run)
    io = checkpoint.PairCheckpointIO([job.dir for job in jobs], keep=watch.is_alive,
                                     inputs=[job.inputs_record() for job in jobs], wandb_id=saved_id)
    if cfg.output.checkpoint_every and cfg.output.checkpoint:
        extra_callbacks = [PeriodicCheckpoint(cfg.output.checkpoint_every, jobs, io), *extra_callbacks]
    devices = 1 if cfg.trainer.devices in ("auto", "1") else cfg.trainer.devices  # auto: every GPU, i.e. DDP
    try:
        # Telemetry drains the last numbers (and the failure watch's health) before Conclude reads the device.
        trainer = L.Trainer(
            max_steps=cfg.trainer.max_steps, accelerator=accelerator, devices=devices,
            precision=settings.precision, logger=False,
            callbacks=[Telemetry(sinks, flush_seconds), Conclude(guard, watch, sinks), StopOnSignal(guard),
                       *extra_callbacks],
            plugins=[io], enable_progress_bar=False, deterministic=cfg.trainer.deterministic,
            enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
            default_root_dir=cfg.output.dir)
    except Exception as e:  # Lightning rejecting trainer.* values (an accelerator this machine lacks, ...)
        raise ConfigError(f"trainer: {first_line(e)}") from None
    return trainer, watch, wandb


class WandbRuns(WandbSink):
    """WandbSink over the jobs' runs, which start after the Trainer is built (and only once outputs may be written)."""

    def __init__(self, jobs: list[Job], renders, module: StyleTransferModule):
        self.jobs = jobs
        contents = [p.content if p.regions is None else masks.overlay(p.content, p.regions) for p in module.pictures]
        super().__init__([None] * len(jobs), renders, contents,
                         [p.styles[0] for p in module.pictures], module.recording.logged,
                         lambda step: module.schedule.sizes[module.schedule.scale_at(step)])

    def on_start(self, trainer, module) -> None:
        super().on_start(trainer, module)
        self.runs = [job.run for job in self.jobs]


class PeriodicCheckpoint(L.Callback):
    """last.ckpt for every live picture every `every` steps (output.checkpoint_every), written by a helper thread
    while training goes on, with config.yaml beside it: a run killed outright (SIGKILL, a lost node) resumes from
    there and loses at most `every` steps."""

    def __init__(self, every: int, jobs: list[Job], io: checkpoint.PairCheckpointIO):
        self.every, self.jobs, self.io = every, jobs, io
        self.configs_written = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every or step >= trainer.max_steps:
            return
        if not self.configs_written:
            for job in self.jobs:
                save_text(job.config_yaml(), os.path.join(job.dir, "config.yaml"))
            self.configs_written = True
        with self.io.background():
            trainer.save_checkpoint(checkpoint.path_in(self.jobs[0].dir), weights_only=False)
