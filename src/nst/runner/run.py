"""Optimizing pictures: one from a config (`run`), or a batch of prepared jobs at once (`fit_batch`, the sweep's).

Both go through the same steps: build the module and the Trainer, start the W&B runs, fit, then write each
picture's outputs. Bad input is reported before any output folder is created (runner/job.py). A picture whose
loss or image stops being finite fails alone: it gets last_good.png and an error, its batch-mates go on.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import lightning as L
from omegaconf import DictConfig

from ..errors import Interrupted, OutputError, TrainingError, signal_name
from ..files import remove_leftovers
from ..model.module import StyleTransferModule
from . import checkpoint
from .hardware import backends_restored
from .interrupt import SignalGuard
from .job import Job, RunResult, keep_pictures, prepare
from .loop import build_module, fit, make_trainer
from .tiles import check_memory
from .outputs import check_writable, fail, keep_interrupted, write_outputs
from .wandb import finish, start_run


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


def _fit(cfg: DictConfig, jobs: list[Job], module: StyleTransferModule, trainer: L.Trainer,
         guard: SignalGuard) -> None:
    """loop.fit, turning a signal into every picture's interrupted.png (and a checkpoint, at a step boundary)."""
    resumed = jobs[0].resume_step > 0
    try:
        guard.phase = "step"
        fit(trainer, module, checkpoint.path_in(jobs[0].dir) if resumed else None)  # weights only (loop.fit)
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
