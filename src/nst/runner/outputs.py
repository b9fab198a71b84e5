"""What a run writes: each finished picture's final.png, config.yaml, metrics.json, last.ckpt and W&B summary;
a failed picture's last_good.png and error; an interrupted one's interrupted.png and checkpoint."""

from __future__ import annotations

import os
import time
from typing import Optional

import lightning as L

from ..errors import ConfigError, Interrupted, OutputError, signal_name
from ..files import save_json, save_png, save_text
from ..model.module import StyleTransferModule
from ..model.tiling import record as tiling_record
from . import checkpoint, memory
from .job import Job, RunResult
from .loop import FailureWatch
from .sinks import WandbSink
from .wandb import log_final


def check_writable(folder: str) -> None:
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output.dir: cannot write to {folder} ({e.strerror or e})") from None


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
    precision = jobs[0].settings.precision
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
        if jobs[0].settings.accelerator == "cpu":  # the process's peak resident memory (a sweep's runs share it)
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
