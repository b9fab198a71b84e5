"""Optimizing pictures: one from a config (`run`), or a batch of prepared jobs at once (`fit_batch`, the sweep's).

Both go through the same steps: build the module and the Trainer, start the W&B runs, fit, then write each
picture's outputs. Bad input is reported before any output folder is created (runner/job.py). A picture whose
loss or image stops being finite fails alone: it gets last_good.png and an error, its batch-mates go on.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Sequence

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ..config import layers_of, scale_sizes, steps_per_scale
from ..errors import ConfigError, Interrupted, OutputError, TrainingError, first_line, signal_name
from ..files import remove_leftovers, save_json, save_png, save_text
from ..model.module import OptimizerSettings, Recording, Schedule, StyleTransferModule
from ..model.objective import LossSettings
from ..model.tiling import record as tiling_record
from ..model.vgg import layer_index, load_vgg19
from .. import masks
from . import checkpoint, memory, tiles
from .sinks import Convergence, SnapshotSink, WandbSink, progress_sink
from .hardware import (backends_restored, check_accelerator, resolve_accelerator, resolve_precision,
                       reuse_freed_memory, tune_backends)
from .interrupt import SignalGuard, StopOnSignal
from .job import Job, RunResult, keep_pictures, prepare
from .tiles import check_memory
from .telemetry import FLUSH_SECONDS, Health, Sink, Telemetry
from .wandb import finish, log_final, resolve_mode, saved_id, start_run

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


def run(cfg: DictConfig, extra_config: Optional[dict] = None) -> RunResult:
    """Optimize one image as `cfg` says and write final.png, config.yaml, metrics.json and last.ckpt to output.dir.

    Bad input (files, images, weights, config values, the checkpoint to resume) is reported before output.dir
    is created. Ctrl-C or SIGTERM raises Interrupted after writing interrupted.png, config.yaml and last.ckpt;
    a non-finite loss raises TrainingError after writing last_good.png (docs/reliability.md).
    """
    existed = os.path.isdir(cfg.output.dir)
    with SignalGuard() as guard:
        job = prepare(Job(cfg, extra_config))
        try:
            fit_batch([job], guard)
        except Interrupted:
            if not existed and os.path.isdir(job.dir) and not os.listdir(job.dir):  # stopped before step 1
                os.rmdir(job.dir)
            raise
    if job.error:
        raise TrainingError(job.error)
    return job.result


def fit_batch(jobs: list[Job], guard: SignalGuard, label: Optional[str] = None) -> None:
    """Optimize prepared jobs of one size together; each ends with `result` or `error`.

    The jobs must differ only in their pictures (images, seed, folder, W&B names): everything else comes from
    the first one's config. Raises Interrupted (after writing every picture's interrupted.png) on a signal. The
    process's backend settings (TF32, cuDNN autotuning) are as before when it returns or raises.
    """
    with backends_restored():
        _fit_batch(jobs, guard, label)


def _fit_batch(jobs: list[Job], guard: SignalGuard, label: Optional[str]) -> None:
    cfg = jobs[0].cfg
    check_memory(cfg, jobs)
    L.seed_everything(cfg.seed, verbose=False)
    module = build_module(jobs)
    trainer, watch, wandb = make_trainer(cfg, jobs, module, guard, label)
    for job in jobs:
        check_writable(job.dir)
        remove_leftovers(job.dir)  # a folder is one run's (or, in a sweep, its claimant's): nobody else writes here
    with ThreadPoolExecutor(max_workers=min(4, len(jobs)), thread_name_prefix="nst-wandb") as starter:
        for job in jobs:  # W&B runs start beside the first steps, which do not wait for them
            if job.run is None:
                job.run = starter.submit(start_run, job.cfg, job.dir, job.extra_config)
        try:
            _fit(cfg, jobs, module, trainer, guard)
            write_outputs(jobs, module, trainer, watch, wandb)
        except OutputError as e:  # disk full, permissions: name the setting to change
            raise OutputError(f"output.dir: {e}") from None
        finally:
            for job in jobs:
                finish(job.run, job)  # exit code 1 for a picture that did not finish
                job.run = None
    if guard.requested:
        where = jobs[0].dir if len(jobs) == 1 else f"the {len(jobs)} pictures' folders"
        raise Interrupted(guard.signum, f"interrupted by {signal_name(guard.signum)} after the run finished; "
                                        f"all outputs are in {where}")


def build_module(jobs: list[Job], extractor=None, temporal_weight: float = 0.0) -> StyleTransferModule:
    """The module for a batch of prepared jobs. A video reuses one `extractor` for all its frames and gives its
    frames a temporal loss (`temporal_weight`; nst.video.run)."""
    cfg = jobs[0].cfg
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
                               schedule=Schedule(scale_sizes(cfg), steps_per_scale(cfg)), optimizer=optimizer,
                               recording=recording, tiling=tiling)


def module_for(cfg: DictConfig) -> StyleTransferModule:
    """The module of a one-picture run of `cfg` (for tools and tests that look inside)."""
    return build_module([prepare(Job(cfg))])


def loop_for(cfg: DictConfig, callbacks: Sequence[L.Callback] = (), checkpoints: bool = False,
             flush_seconds: Optional[float] = FLUSH_SECONDS) -> tuple[StyleTransferModule, L.Trainer]:
    """The module and Trainer of a one-picture run of `cfg` with more callbacks, for tools that time or count the
    training loop itself (`trainer.fit(module, train_dataloaders=steps_loader(n))`). Nothing is written unless
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


def make_trainer(cfg: DictConfig, jobs: list[Job], module: StyleTransferModule, guard: SignalGuard,
                 label: Optional[str], extra_callbacks: Sequence[L.Callback] = (),
                 flush_seconds: Optional[float] = FLUSH_SECONDS, extra_sinks: Sequence[Sink] = ()
                 ) -> tuple[L.Trainer, FailureWatch, Optional[WandbSink]]:
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
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
            precision=resolve_precision(str(cfg.trainer.precision), accelerator), logger=False,
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


def check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output.dir: cannot write to {folder} ({e.strerror or e})") from None


def _fit(cfg: DictConfig, jobs: list[Job], module: StyleTransferModule, trainer: L.Trainer,
         guard: SignalGuard) -> None:
    """trainer.fit, turning a signal into every picture's interrupted.png (and a checkpoint, at a step boundary)."""
    resumed = jobs[0].resume_step > 0
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    try:
        guard.phase = "step"
        with quiet_lightning(), reuse_freed_memory(accelerator == "cpu"):
            trainer.fit(module, train_dataloaders=steps_loader(cfg.trainer.max_steps),
                        ckpt_path=checkpoint.path_in(jobs[0].dir) if resumed else None, weights_only=True)
        guard.phase = "hold"
    except Interrupted as e:  # a second signal: the step in progress was cut short
        guard.phase = "hold"
        raise keep_interrupted(jobs, module, trainer, e.signum, cut_short=True) from None
    except OutputError as e:  # a periodic checkpoint could not be written (a full disk): keep the pictures
        guard.phase = "hold"
        raise keep_pictures(jobs, [j.inputs.render(module.target[b:b + 1]) for b, j in enumerate(jobs)],
                            trainer.global_step, e) from None
    except TrainingError as e:  # the whole batch (an update that overflowed)
        guard.phase = "hold"
        for b, job in enumerate(jobs):
            fail(job, module, b, str(e), trainer.global_step, trainer)
        return
    if guard.requested and trainer.global_step < cfg.trainer.max_steps:
        raise keep_interrupted(jobs, module, trainer, guard.signum, cut_short=False)


def fail(job: Job, module: StyleTransferModule, b: int, message: str, good_steps: int, trainer: L.Trainer) -> None:
    """last_good.png and the one-line error; no checkpoint (a periodic one would resume into the same failure)."""
    path = os.path.join(job.dir, "last_good.png")
    save_png(job.inputs.render(module.last_good[b:b + 1]), path)
    trainer.strategy.remove_checkpoint(checkpoint.path_in(job.dir))  # after a periodic one still on its way
    job.error = f"{message}; the last good image (after {good_steps} steps) is in {path}"


def write_outputs(jobs: list[Job], module: StyleTransferModule, trainer: L.Trainer, watch: FailureWatch,
                  wandb: Optional[WandbSink]) -> None:
    """Each finished picture's final.png, config.yaml, metrics.json, last.ckpt and W&B summary; each failed
    one's last_good.png and error."""
    if any(job.error for job in jobs):
        return  # the whole batch failed in _fit
    # What came from the device before the teardown (Conclude); the module is on the CPU now.
    outcome = module.outcome
    alive = [watch.is_alive(b) for b in range(len(jobs))]
    accelerator = resolve_accelerator(jobs[0].cfg.trainer.accelerator)
    precision = resolve_precision(str(jobs[0].cfg.trainer.precision), accelerator)
    for b, job in enumerate(jobs):
        if not alive[b]:
            h = watch.health[b]
            fail(job, module, b, h.message, h.good_steps, trainer)
            continue
        image = job.inputs.render(outcome.images[b:b + 1])
        metrics = {**outcome.parts[b], "initial_loss": outcome.initial_loss[b],
                   "steps": int(trainer.global_step), "evaluations": outcome.evaluations[b],
                   "seconds": round(outcome.seconds, 3), "total_seconds": round(time.time() - job.started, 3),
                   "size": [image.height, image.width], "precision": precision, "batch": len(jobs),
                   "stopped": "tolerance" if trainer.global_step < trainer.max_steps else "max_steps"}
        if outcome.peak_memory_mb is not None:  # the batch's peak, device memory held by tensors (GPU only)
            metrics["peak_memory_mb"] = outcome.peak_memory_mb
        if accelerator == "cpu":  # the process's peak resident memory (since it started: a sweep's runs share it)
            metrics["peak_rss_mb"] = memory.peak_rss_mb()
        if module.tiling is not None:
            metrics["tiling"] = tiling_record(module.tiling, list(job.sizes()))
        save_png(image, os.path.join(job.dir, "final.png"))
        save_text(job.config_yaml(), os.path.join(job.dir, "config.yaml"))
        save_json(metrics, os.path.join(job.dir, "metrics.json"))
        if os.path.exists(os.path.join(job.dir, "interrupted.png")):  # a resumed run's: final.png supersedes it
            os.unlink(os.path.join(job.dir, "interrupted.png"))
        job.result = RunResult(image, metrics, job.dir)
    if jobs[0].cfg.output.checkpoint and any(alive):
        try:
            trainer.save_checkpoint(checkpoint.path_in(jobs[0].dir), weights_only=False)
        except OutputError as e:  # the pictures are written: say so
            raise OutputError(f"{e}; final.png, config.yaml and metrics.json were written") from None
    for b, job in enumerate(jobs):
        if wandb is not None and job.run is not None and job.result is not None:
            if job.cfg.logger.image_every:
                wandb.log_grid(b, job.result.image, int(trainer.global_step), wait=True)
            job.run = wandb.ready(b)
            log_final(job.run, job.cfg, job.dir, job.result.metrics)


def keep_interrupted(jobs: list[Job], module: StyleTransferModule, trainer: L.Trainer, signum: int,
                     cut_short: bool) -> Interrupted:
    """Keep each image and (at a step boundary) a checkpoint; returns the exception to raise, which says what was
    kept and how to go on (like job.keep_pictures)."""
    name = signal_name(signum)
    messages = []
    for b, job in enumerate(jobs):
        image_path = os.path.join(job.dir, "interrupted.png")
        save_text(job.config_yaml(), os.path.join(job.dir, "config.yaml"))
        resume = f"resume with: python train.py --config {os.path.join(job.dir, 'config.yaml')} resume=true"
        if cut_short:  # the optimizer may be half way through a step: its state is not worth keeping
            save_png(job.inputs.render(module.last_good[b:b + 1]), image_path)
            old = checkpoint.path_in(job.dir)
            tail = (f"; {old} is from an earlier step, {resume}" if os.path.exists(old)
                    else "; no checkpoint was written (interrupted twice)")
            messages.append(f"interrupted by {name} during step {trainer.global_step + 1}: wrote {image_path} "
                            f"(after {trainer.global_step} steps){tail}")
        else:
            save_png(job.inputs.render(module.target[b:b + 1]), image_path)
            messages.append(f"interrupted by {name} at step {trainer.global_step}/{job.cfg.trainer.max_steps}: "
                            f"wrote {image_path} and {checkpoint.path_in(job.dir)}; {resume}")
    if not cut_short:
        trainer.save_checkpoint(checkpoint.path_in(jobs[0].dir), weights_only=False)
    if len(jobs) == 1:
        return Interrupted(signum, messages[0])
    return Interrupted(signum, f"interrupted by {name} at step {trainer.global_step}: wrote interrupted.png"
                               f"{'' if cut_short else ' and last.ckpt'} in the folders of {len(jobs)} pictures")
