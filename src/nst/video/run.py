"""The frame loop: a clip, or B clips of one frame size in lockstep, stylized frame by frame with temporal
consistency (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016).

Frame 1 runs the full schedule (trainer.max_steps, coarse to fine) from its content. Frame t > 1 starts from the
stylized frame t-1 warped along the flow of the original frames (t -> t-1, video/flow.py), and the Objective gets
a temporal loss towards the earlier stylized frames warped into frame t, weighted per pixel by where the flow is
reliable (Objective.set_temporal: the targets are buffers like every other). It runs video.steps_later steps at
one scale, since it starts close to its answer. `video.temporal=false` is the per-frame baseline: every frame from
its own content, full schedule, no temporal loss.

Why a module and a Trainer per frame, through the fit seam of images (runner/loop.py), rather than one Trainer
kept alive: each frame is a new optimization problem (new content and temporal targets, a new starting image, a
fresh L-BFGS), and a new module per frame reuses everything the image path already gets right: the telemetry
without host syncs, the failure watch, the signals, and Conclude, which reads the frame's image and final losses
before Lightning's teardown moves the module to the CPU. Nothing computes on a module after its fit; the warping
for the next frame runs on the host copy of the result (video/temporal.py). The VGG19 is loaded once and shared
by every frame. The cost is Lightning's setup per frame, about 0.3 s (`make bench-video`'s seconds per frame).

A video's checkpoint is its folder: frames/00001.png... (written as each frame ends), flow/ (the flow cache) and
progress.json (each written frame's numbers). A run killed at any point resumes (resume=true) at the first frame
not written; the frame it was in starts over. final.mp4, metrics.json and the W&B video come at the end.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Iterator, Optional

import torch
from omegaconf import DictConfig
from PIL import Image

from ..config import layers_of, style_paths, to_yaml
from ..errors import Interrupted, OutputError, TrainingError, signal_name
from ..files import remove_leftovers, save_json, save_png, save_text, say_replaced
from ..images import open_rgb, to_tensor
from ..model import color
from ..model.vgg import layer_index, load_vgg19
from ..runner.hardware import backends_restored
from ..runner.interrupt import SignalGuard
from ..runner.job import Job, prepare_inputs
from ..runner.loop import KeepOnDevice, build_module, fit, make_trainer
from ..runner.tiles import check_memory
from ..runner.outputs import check_writable
from ..runner.telemetry import Sink
from ..runner import wandb
from ..runner.wandb import finish, start_run
from . import flow as flows
from .decode import VideoError, read_clip
from .encode import write_video
from .job import VideoJob, VideoResult
from .progress import FrameProgress, StepBar, VideoWandb
from .resume import PROGRESS, frames_to_resume, save_progress, warn_replaced
from .temporal import compute_ahead, temporal_targets, wait_ahead, warping_errors


def run_video(cfg: DictConfig, extra_config: Optional[dict] = None) -> VideoResult:
    """Stylize the clip of data.content as `cfg` says: frames/, final.mp4, metrics.json, config.yaml in output.dir.
    Bad input is one UserError before output.dir exists; a signal stops after the current frame's step and keeps
    every written frame (resume=true continues)."""
    with SignalGuard() as guard, backends_restored():  # the process's TF32/cuDNN settings come back
        job = prepare_video(cfg, extra_config)
        fit_videos([job], guard)
    if job.error:
        raise TrainingError(job.error)
    return job.result


def prepare_video(cfg: DictConfig, extra_config: Optional[dict] = None) -> VideoJob:
    """Decode the clip and read the styles (a VideoError or ConfigError for anything wrong), and what a resume
    continues from. Writes nothing."""
    v = cfg.video
    clip = read_clip(cfg.data.content, cfg.data.size, v.start, v.max_frames, v.fps)
    if v.chunk and v.max_frames and len(clip.frames) < v.max_frames:  # a sweep's chunk: its frames were counted
        raise VideoError(f"{cfg.data.content}: frames {v.start + 1}-{v.start + v.max_frames} were planned, "
                         f"{len(clip.frames)} decode (the file was truncated or changed since)")
    styles = [open_rgb(p) for p in style_paths(cfg)]
    prepare_inputs(cfg, content=clip.frames[0], styles=styles)  # the size checks of an image run
    job = VideoJob(cfg, clip, styles, extra_config)
    if cfg.resume:
        job.frames_done, job.from_seam = frames_to_resume(job)
    else:
        warn_replaced(job)
    return job


def frame_config(cfg: DictConfig, first: bool) -> DictConfig:
    """The config of one frame's optimization: the first frame (and every frame of the baseline) runs the full
    schedule; later frames video.steps_later steps at one scale. Logging, progress and checkpoints are the
    video's, not the frame's."""
    f = copy.deepcopy(cfg)
    f.resume = False
    f.output.checkpoint_every = 0
    f.output.checkpoint = False
    f.output.save_every = 0
    f.logger.mode = "disabled"
    f.trainer.enable_progress_bar = False
    if not first:
        f.trainer.max_steps = cfg.video.steps_later
        f.scales.min = 0
    return f


def _start(job: VideoJob) -> None:
    """The folder of a (re)started video: a fresh run clears the frames, flows and progress of an earlier one."""
    check_writable(job.dir)
    if not job.cfg.resume:
        say_replaced(job.dir, ("final.mp4", "frames", "metrics.json", PROGRESS))
        for name in ("frames", "flow"):
            shutil.rmtree(os.path.join(job.dir, name), ignore_errors=True)
        for name in (PROGRESS, "final.mp4", "metrics.json"):
            if os.path.exists(os.path.join(job.dir, name)):
                os.unlink(os.path.join(job.dir, name))
    for sub in ("", "frames", "flow"):
        os.makedirs(os.path.join(job.dir, sub), exist_ok=True)
        remove_leftovers(os.path.join(job.dir, sub))
    save_text(to_yaml(job.cfg), os.path.join(job.dir, "config.yaml"))
    job.flows = flows.FlowCache(os.path.join(job.dir, "flow"), job.clip.frames)
    luminance = job.cfg.color.preserve == "luminance"
    reach = max(job.cfg.video.long_term)
    for t in range(max(0, job.next - reach), job.next):  # a resumed video's earlier frames, from their PNGs
        image = to_tensor(Image.open(job.frame_path(t)).convert("RGB"))
        job.previous[t] = color.gray3(color.luminance(image)) if luminance else image


def fit_videos(jobs: list[VideoJob], guard: SignalGuard, label: Optional[str] = None) -> None:
    """Stylize prepared clips of one frame size together, frame by frame (a batch of B videos in lockstep: frame t
    of every clip in one fit); each ends with `result` or `error`."""
    cfg = jobs[0].cfg
    if len({j.clip.size for j in jobs}) != 1:
        raise ValueError("the clips of a batch must have one frame size")
    content_layers, style_layers = layers_of(cfg)
    extractor = load_vgg19(cfg.model.weights, cfg.model.pooling,
                           max(content_layers + style_layers, key=layer_index), cfg.seed)
    for job in jobs:
        job.batch = len(jobs)
        _start(job)
        job.run = start_run(job.cfg, job.dir, {**(job.extra_config or {}), "video_frames": job.n})
    guard.phase = "hold"  # outputs exist from here on: a signal stops after the frame, or after final.mp4
    progress = FrameProgress(cfg.trainer.enable_progress_bar, sum(j.n for j in jobs), sum(j.next for j in jobs),
                             label) if cfg.trainer.enable_progress_bar else None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-flow")  # the next frame's flows
    # the style Grams, computed once per clip and kept on the device (colour modes restyle each frame: not those)
    grams = {} if cfg.color.preserve == "none" else None
    try:
        while True:
            active = [j for j in jobs if not j.error and j.next < j.n]
            if not active:
                break
            fresh = [j for j in active if j.next == 0 and j.seam is None]  # the full schedule from the content
            for group in (fresh, [j for j in active if j not in fresh]):
                if group:
                    _fit_frame(group, (extractor, grams), guard, progress, label, pool)
            if guard.requested:
                raise _interrupted(jobs, guard.signum)
        for job in jobs:
            if not job.error:
                conclude_video(job)
        if guard.requested:  # a signal while final.mp4 was written: it was finished first
            where = jobs[0].dir if len(jobs) == 1 else f"the folders of {len(jobs)} videos"
            raise Interrupted(guard.signum, f"interrupted by {signal_name(guard.signum)} after the video finished; "
                                            f"all outputs are in {where}")
    except OutputError as e:
        raise OutputError(f"output.dir: {e}") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress.close()
        for job in jobs:
            finish(job.run)
            job.run = None


def _fit_frame(group: list[VideoJob], shared: tuple, guard: SignalGuard, progress: Optional["FrameProgress"],
               label: Optional[str], pool: Executor) -> None:
    """The next frame of every clip of `group` (all at their first frame, or all past it) as one batch."""
    started = time.perf_counter()
    cfg = group[0].cfg
    first = group[0].next == 0 and group[0].seam is None
    temporal = cfg.video.temporal and cfg.video.temporal_weight > 0
    fcfg = frame_config(cfg, first or not temporal)
    fcfg.data.size = max(group[0].clip.size)  # the frames' even sides (io.frame_size), not data.size's rounding
    jobs, warped, weights = [], [], []
    flow_seconds = 0.0
    for vj in group:
        t = vj.next
        jcfg = copy.deepcopy(fcfg)
        jcfg.output.dir = vj.dir
        inputs = prepare_inputs(jcfg, content=vj.clip.frames[t], styles=vj.styles)
        if temporal and not first:
            flow_seconds += wait_ahead(vj, t)  # computed while the frame before optimized
            before = vj.flows.seconds
            w, c = temporal_targets(vj, t)
            flow_seconds += vj.flows.seconds - before
            inputs.init = w[:1]  # start from the previous stylized frame, warped
            warped.append(w)
            weights.append(c)
        jobs.append(Job(jcfg, vj.extra_config, inputs))
    if first:
        check_memory(fcfg, jobs)
    module = build_module(jobs, shared[0], cfg.video.temporal_weight if temporal else 0.0, shared[1])
    if warped:
        module.objective.set_temporal(torch.stack(warped), torch.stack(weights))
    offsets = [vj.global_step for vj in group]
    sinks: list[Sink] = [VideoWandb(group, offsets)] if any(vj.run is not None for vj in group) else []
    callbacks = [KeepOnDevice("extractor"), *([StepBar(progress)] if progress is not None else [])]
    trainer, watch, _ = make_trainer(fcfg, jobs, module, guard, label, callbacks, extra_sinks=sinks)
    for vj in group:
        if temporal and vj.next + 1 < vj.n:
            compute_ahead(pool, vj, vj.next + 1)
    try:
        guard.phase = "step"
        fit(trainer, module)
    except Interrupted as e:  # a second signal: this frame is lost, the written ones stay
        raise _interrupted(group, e.signum) from None
    except TrainingError as e:
        for vj in group:
            vj.error = f"frame {vj.next + 1}/{vj.n}: {e}"
        return
    finally:
        guard.phase = "hold"
    outcome = module.outcome  # read by Conclude before the teardown; None when a signal cut the frame short
    if outcome is None:
        raise _interrupted(group, guard.signum or 2)
    seconds = time.perf_counter() - started
    for b, vj in enumerate(group):
        t = vj.next
        if not watch.is_alive(b):
            vj.error = f"frame {t + 1}/{vj.n}: {watch.health[b].message}"
            continue
        image = outcome.images[b:b + 1]
        save_png(jobs[b].inputs.render(image), vj.frame_path(t))
        vj.previous[t] = image.float()
        for old in [k for k in vj.previous if k <= t - max(cfg.video.long_term)]:
            del vj.previous[old]
        row = {"frame": t + 1, **{k: v for k, v in outcome.parts[b].items() if not k.startswith("style/")},
               "steps": int(trainer.global_step), "seconds": round(seconds, 3),
               "optimize_seconds": round(outcome.seconds, 3), "flow_seconds": round(flow_seconds, 3)}
        vj.frames_done.append(row)
        save_progress(vj)
        if vj.run is not None:
            vj.run.log({f"frame/{k}": v for k, v in row.items() if k != "frame"} | {"frame": t + 1},
                       step=offsets[b] + int(trainer.global_step))
    if progress is not None:
        progress.frames_done(len(group), seconds, sum(r["loss"] for vj in group for r in vj.frames_done[-1:])
                             / max(1, len(group)))


def _interrupted(jobs: list[VideoJob], signum: int) -> Interrupted:
    name = signal_name(signum)
    job = jobs[0]
    where = job.dir if len(jobs) == 1 else f"the folders of {len(jobs)} videos"
    if job.next == 0:  # nothing to resume: progress.json comes with the first frame
        return Interrupted(signum, f"interrupted by {name} in frame 1/{job.n}, before any frame was written; run "
                                   f"the same command again to start over")
    return Interrupted(signum, f"interrupted by {name} at frame {job.next + 1}/{job.n}: the {job.next} frames "
                               f"written and the cached flow stay in {where}; resume with: python train.py "
                               f"--config {os.path.join(job.dir, 'config.yaml')} resume=true")


def stylized(job: VideoJob) -> Iterator[Image.Image]:
    """The written frames, read one at a time: the end of a long clip holds no more of them than its start."""
    for t in range(job.n):
        with Image.open(job.frame_path(t)) as im:
            yield im.convert("RGB")


def conclude_video(job: VideoJob) -> None:
    """final.mp4 (with the input's audio), metrics.json and the W&B video and summary, from the written frames."""
    cfg = job.cfg
    clip = job.clip
    write_video(os.path.join(job.dir, "final.mp4"), stylized(job), clip.fps, clip.source if clip.audio else None,
                clip.start_time, clip.duration, cfg.video.crf)
    errors = warping_errors(job, stylized(job))
    originals = warping_errors(job, clip.frames)
    rows = job.frames_done
    later = [r["seconds"] for r in rows[1:]]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    metrics = {
        "frames": job.n, "fps": float(clip.fps), "size": [clip.size[1], clip.size[0]],
        "temporal": bool(cfg.video.temporal),
        "warping_error": mean(errors), "warping_error_input": mean(originals),
        "style_loss": mean([r["style_loss"] for r in rows]), "content_loss": mean([r["content_loss"] for r in rows]),
        "loss": mean([r["loss"] for r in rows]),
        "seconds_per_frame": mean([r["seconds"] for r in rows]), "first_frame_seconds": rows[0]["seconds"],
        "later_frame_seconds": mean(later), "seconds": round(sum(r["seconds"] for r in rows), 3),
        "total_seconds": round(time.time() - job.started, 3), "steps": job.global_step, "batch": job.batch,
        "audio": clip.audio,
        "precision": job.settings.precision,
        "notes": clip.notes, "per_frame": rows, "per_frame_warping_error": errors,
    }
    if job.seam is not None:  # a chunk's first frame against the previous chunk's last
        flow, weight = job.seam_flow()
        metrics["seam_warping_error"] = flows.warping_error(to_tensor(next(stylized(job))), job.seam[0], flow,
                                                            weight)
        metrics["seam_warping_error_input"] = flows.warping_error(
            to_tensor(clip.frames[0]), to_tensor(job.seam[1].resize(clip.size, Image.Resampling.LANCZOS)), flow, weight)
    if "temporal_loss" in rows[0]:
        metrics["temporal_loss"] = mean([r["temporal_loss"] for r in rows])
    save_json(_finite(metrics), os.path.join(job.dir, "metrics.json"))
    job.result = VideoResult(_finite(metrics), job.dir)
    if job.run is not None:
        log_video(job.run, job, metrics)


def _finite(value):
    """JSON without NaN (null instead): a one-frame clip has no warping error."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def log_video(run, job: VideoJob, metrics: dict) -> None:
    """The result as a wandb.Video (final.mp4), original | stylized side by side (side_by_side.mp4, written for
    it), and the numbers in the summary. Files, not arrays: wandb encodes arrays with moviepy, not a dependency."""
    from .showcase import side_by_side

    both = os.path.join(job.dir, "side_by_side.mp4")
    write_video(both, (side_by_side(o, s) for o, s in zip(job.clip.frames, stylized(job))), job.clip.fps,
                crf=job.cfg.video.crf)
    wandb.log(run, {"video": wandb.video(os.path.join(job.dir, "final.mp4")),
                    "video_side_by_side": wandb.video(both, "original | stylized")}, job.global_step)
    wandb.summarize(run, {f"final/{key}": value for key, value in metrics.items()
                          if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)})


def describe(result: VideoResult) -> str:
    m = result.metrics
    we = m["warping_error"]
    return (f"wrote {result.run_dir}/final.mp4 ({m['size'][1]}x{m['size'][0]}, {m['frames']} "
            f"frame{'s' * (m['frames'] != 1)} at {m['fps']:g} fps{', with audio' if m['audio'] else ''}) in "
            f"{m['seconds']:.1f} s, {m['seconds_per_frame']:.2f} s/frame: warping error "
            f"{'n/a (one frame)' if we is None else f'{we:.3g}'}, "
            f"style {m['style_loss']:.4g}, content {m['content_loss']:.4g}")

