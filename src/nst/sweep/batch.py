"""This process's batches of a sweep, run: each batch (sweep/assign.py chose and claimed its pairs) read in a
helper thread while the previous one runs, then optimized as one [B, 3, H, W] target through VGG19; on running
out of GPU memory, each half on its own. Every pair reports done or failed on its own line and in its own folder.

A batch is a list of runner jobs (runner/job.py) handed to `fit_batch`; every pair keeps its own folder,
outputs, W&B run, checkpoint and failure. A video pair (its content a clip) is a `VideoJob` run by the video
frame loop (`video.run.fit_videos`): the video pairs of one frame size and one grid setting share a batch, and
advance frame by frame together, frame t of every clip in one batched L-BFGS fit.
"""

from __future__ import annotations

import gc
import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
from omegaconf import DictConfig
from PIL import Image

from ..errors import UserError, first_line
from ..files import save_text
from ..runner import memory
from ..runner.hardware import backends_restored
from ..runner.interrupt import SignalGuard
from ..runner.job import Job, prepare
from ..runner.run import fit_batch
from .assign import Work, assign, claim_batch
from .claims import Heartbeat
from ..video.run import VideoJob, fit_videos, prepare_video
from .plan import Pair, made_alike
from .processes import Dist, hidden_launcher_env, say
from .report import ERROR_FILE, Result


def run_share(cfg: DictConfig, pairs: list[Pair], d: Dist, device: Optional[int], heartbeat: Heartbeat,
              since: float) -> list[Result]:
    """Pairs for this process: its own share, pairs[rank::world_size], first, then any other pair nobody has
    claimed yet (another launch's, or a slower rank's). Complete pairs are skipped, the rest batched by size;
    each pair is claimed just before its batch runs, and released after."""
    results, batches = assign(cfg, pairs, d, device)

    def claimed(k: int):  # batch k, claimed, with its images being read by the helper thread
        held = claim_batch(batches[k], d, heartbeat, since, cfg.sweep.stale_after) if k < len(batches) else []
        return held, (reader.submit(prepare_batch, held, d) if held else None)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-prepare") as reader:
        upcoming = claimed(0)
        for k in range(len(batches)):
            batch, reading = upcoming
            if reading is not None:
                reading.result()
            upcoming = claimed(k + 1)  # the next batch is read while this one runs
            try:
                results += [failed(d, w, w.error, w.details) for w in batch if w.error]
                runnable = [w for w in batch if not w.error]
                if runnable:
                    results += run_batch(runnable, d, f"batch {k + 1}/{len(batches)}" if len(runnable) > 1 else None)
            finally:
                for work in batch:
                    heartbeat.drop(work.claim)
    return results


def prepare_batch(batch: list[Work], d: Dist) -> list[Work]:
    """Read each pair's images and check its checkpoint (in a helper thread, while the GPU works on the last
    batch). A checkpoint that cannot be resumed means starting over; any other bad input fails the pair."""
    for work in batch:
        try:
            make = prepare_video if work.pair.video else lambda cfg, extra: prepare(Job(cfg, extra))
            try:
                work.job = make(work.cfg, pair_extra(work))
            except UserError as e:
                if not (work.cfg.resume and str(e).startswith("resume:")):
                    raise
                say(d, f"{work.where}: cannot resume ({first_line(e)}); starting over")
                work.cfg.resume = False
                work.job = make(work.cfg, pair_extra(work))
            if isinstance(work.job, Job):
                work.job.written = dict(work.written or {})
        except Exception as e:
            work.error, work.details = first_line(e, typed=True), traceback.format_exc()
    return batch


def pair_extra(work: Work) -> dict:
    """What a pair's W&B run records beside its config."""
    return {"pair": {"content": work.pair.content, "style": work.pair.style, "name": work.pair.name,
                     "index": work.pair.index}, "sweep_name": work.cfg.logger.group, "grid": dict(work.pair.settings)}


def run_batch(batch: list[Work], d: Dist, label: Optional[str]) -> list[Result]:
    """Optimize prepared pairs together; on running out of GPU memory, each half on its own."""
    for work in batch:
        seam = ""
        job = work.job
        if work.pair.previous and isinstance(job, VideoJob) and (job.next == 0 or job.from_seam) and job.seam is None:
            work.job.seam = seam_of(work)
            seam = ", its first frame from the previous chunk's last" if work.job.seam is not None else \
                ", its first frame from its content (the previous chunk is not written yet)"
        say(d, f"{work.where}: running ({work.why}{seam})" + (f" in {label} of {len(batch)}" if label else ""))
        # An older result goes first: if this redo is interrupted, it must not look complete next to the new
        # config.yaml.
        for stale in (work.pair.result_file, "metrics.json"):
            if os.path.isfile(os.path.join(work.pair.dir, stale)):
                os.unlink(os.path.join(work.pair.dir, stale))
        work.job.started = time.time()
    out_of_memory = refused = False
    try:
        with SignalGuard() as guard, hidden_launcher_env(), backends_restored():
            (fit_videos if batch[0].pair.video else fit_batch)([w.job for w in batch], guard, label)
    except Exception as e:
        if memory.is_out_of_memory(e) or (isinstance(e, memory.TooLarge) and len(batch) > 1):
            # Out of memory (torch's error, a cuDNN/cuBLAS allocation failure) or refused by the run's own check:
            # nothing is retried in here, since the traceback holds the failed attempt's frames, and with them its
            # activations and optimizer state, until the except block ends.
            out_of_memory, refused = True, isinstance(e, memory.TooLarge)
        else:  # output.dir problems, a bug: every unfinished pair of the batch fails, the sweep goes on
            details = traceback.format_exc()
            free_memory()
            # A pair whose final.png and metrics.json were written before the failure (last.ckpt on a full disk)
            # is done.
            return [finished(d, w, but=first_line(e, typed=True)) if w.job.result is not None
                    else failed(d, w, first_line(e, typed=True), details) for w in batch]
    if out_of_memory:
        free_memory()
        if len(batch) == 1:
            return [failed(d, batch[0], "out of GPU memory (lower data.size, or optim.history)")]
        half = len(batch) // 2
        why = "more memory than is free" if refused else "out of GPU memory"
        say(d, f"{why} with {len(batch)} pairs in a batch: going on with {half} and {len(batch) - half}")
        for work in batch:
            work.job = again(work)
        return run_batch(batch[:half], d, label) + run_batch(batch[half:], d, label)
    results = []
    for work in batch:
        job = work.job
        results.append(failed(d, work, job.error) if job.error else finished(d, work))
    return results


def seam_of(work: Work):
    """A chunk's seam (video.chunk): the previous chunk's last stylized frame and its original, when that chunk is
    complete now; else None (the chunk then starts from its content, with the full schedule)."""
    from ..images import to_tensor
    from ..video.decode import read_clip
    prev = work.pair.previous
    try:
        with open(os.path.join(prev, "metrics.json")) as f:
            n = int(json.load(f)["frames"])
        if not os.path.isfile(os.path.join(prev, "final.mp4")) or not made_alike(prev, work.cfg):
            return None  # not written, or by an older sweep with other settings
        with Image.open(os.path.join(prev, "frames", f"{n:05d}.png")) as im:
            last = to_tensor(im.convert("RGB"))
        v = work.cfg.video
        original = read_clip(work.cfg.data.content, work.cfg.data.size, v.start - 1, 1, v.fps).frames[0]
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return None
    if tuple(last.shape[-2:]) != tuple(work.job.clip.size[::-1]):
        return None
    return last, original


def done_line(m: dict) -> str:
    if "frames" in m:  # a video
        we, seam = m.get("warping_error"), m.get("seam_warping_error")
        return (f"{m['frames']} frame{'s' * (m['frames'] != 1)}, {m['seconds_per_frame']:.2f} s/frame, "
                f"warping error "
                f"{'n/a' if we is None else f'{we:.3g}'}" + (f" (at the seam {seam:.3g})" if seam is not None else "")
                + f", loss {m['loss']:.4g}")
    return f"{m['steps']} steps, loss {m['loss']:.4g}"


def again(work: Work) -> Job | VideoJob:
    """A pair's job as it was prepared, to run again in a smaller batch. A video keeps the frames it wrote and goes
    on from them (its folder is its checkpoint)."""
    job = work.job
    if isinstance(job, VideoJob):
        cfg = job.cfg
        cfg.resume = bool(job.frames_done) or bool(cfg.resume)
        return VideoJob(cfg, job.clip, job.styles, job.extra_config, frames_done=list(job.frames_done),
                        started=job.started, seam=job.seam)
    return Job(work.cfg, job.extra_config, job.inputs, job.resume_step, written=job.written)


def finished(d: Dist, work: Work, but: str = "") -> Result:
    """A done pair: its line, no error.txt of an earlier failure, its summary row. `but`: what failed after its
    outputs were all written (its last.ckpt on a full disk)."""
    m = work.job.result.metrics
    if os.path.exists(os.path.join(work.pair.dir, ERROR_FILE)):
        os.unlink(os.path.join(work.pair.dir, ERROR_FILE))
    say(d, f"{work.where}: done in {m['seconds']:.1f} s, {done_line(m)}" + (f"; but {but}" if but else ""))
    return Result(work.pair.index, "done", d.rank, metrics=m)


def failed(d: Dist, work: Work, message: str, details: str = "") -> Result:
    """A failed pair: its line, its error.txt (the message and what led to it), its summary row."""
    say(d, f"{work.where}: failed: {message}")
    try:
        save_text(f"{message}\n\n{details}".rstrip() + "\n", os.path.join(work.pair.dir, ERROR_FILE))
    except Exception:  # the folder itself may be what is wrong; the summary row still says why
        pass
    free_memory()
    return Result(work.pair.index, "failed", d.rank, message)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

