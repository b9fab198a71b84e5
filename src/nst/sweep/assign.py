"""Which pairs this process computes, and in which batches: its own share of the sweep (pairs[rank::world_size])
first, then any pair nobody has claimed yet (another launch's, or a slower rank's). Pairs that can be optimized
together (the same BatchKey: target size at every scale, resume step, grid setting) go in one batch of up to
`sweep.batch` pairs; on a GPU `sweep.batch=auto` fills the memory (up to MAX_AUTO_BATCH pairs); on a CPU a
batch is one pair (a batch gains nothing there: the cores are busy with one image already). Each pair is
claimed (sweep/claims.py) just before its batch runs, so that other processes, of this launch or another, take
the pairs this one does not. Image and video pairs never share a batch. sweep/batch.py runs the batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from ..config import scale_sizes
from ..errors import UserError, first_line
from ..images import fit_size, oriented_size
from ..runner import checkpoint, memory, tiles
from ..runner.hardware import resolve_precision
from . import claims
from .claims import Heartbeat
from .plan import Pair, pair_config, state
from .processes import Dist, gpu_sharing, say
from .report import ERROR_FILE, Result

if TYPE_CHECKING:
    from ..runner.job import Job
    from ..video.run import VideoJob

# Per-image throughput stops growing from about batch 16: the VGG19 floor on an H200 at 512 px took 2.75 ms for one
# image, 1.04 ms per image at batch 4, 0.93 at 16 and 32.
MAX_AUTO_BATCH = 16


class BatchKey(NamedTuple):
    sizes: tuple[tuple[int, int], ...]  # (width, height) at every scale (a video's: its frame size)
    start: int | str  # the step a picture resumes from; "video" for a clip
    setting: str  # the grid's setting (Pair.setting)


@dataclass
class Work:
    """A pair this process computes: its config, why it runs, the batch it can share, and in the end its job."""
    pair: Pair
    where: str  # "3/12 tubingen__starry_night", for messages
    cfg: DictConfig
    why: str
    key: Optional[BatchKey]  # pairs with equal keys can share a batch (None: alone)
    own: bool = True  # in this rank's share (its messages are shown; others' pairs are taken silently)
    claim: Optional[claims.Claim] = None
    job: Optional[Job | VideoJob] = None
    error: str = ""  # why it failed before its batch ran
    details: str = ""  # the traceback behind `error`, for error.txt
    written: Optional[dict] = None  # the sweep's own device settings, for the pair's config.yaml (Job.written)


def assign(cfg: DictConfig, pairs: list[Pair], d: Dist, device: Optional[int]) -> tuple[list[Result], list[list[Work]]]:
    """This process's pairs, in the order it takes them, grouped in batches; the results of those of its own share
    that are complete already (skipped) or cannot even be configured (failed)."""
    mine = pairs[d.rank::d.world_size]
    ordered = mine + [p for p in pairs[d.rank:] + pairs[:d.rank] if p not in mine]
    results: list[Result] = []
    todo: list[Work] = []
    for pair in ordered:
        where = f"{pair.index + 1}/{len(pairs)} {pair.name}"
        try:
            pc = pair_config(cfg, pair, device)
        except UserError as e:  # cannot happen for a validated sweep config, but never stop the others
            if pair in mine:
                results.append(Result(pair.index, "failed", d.rank, first_line(e)))
                say(d, f"{where}: failed: {first_line(e)}")
            continue
        status, why = state(pair, pc)
        if status == "complete":
            if pair in mine:
                results.append(Result(pair.index, "cached", d.rank))
                say(d, f"{where}: complete, skipped")
            continue
        pc.resume = status == "resumable"
        todo.append(Work(pair, where, pc, why, batch_key(pc, pair), own=pair in mine,
                         written={k: OmegaConf.select(cfg, k) for k in ("trainer.accelerator", "trainer.devices")}))
    sharing = gpu_sharing(d) if device is not None else 1
    return results, group(todo, lambda work: batch_limit(cfg, work, device, sharing))


def claim_batch(batch: list[Work], d: Dist, heartbeat: Heartbeat, since: float, stale: float) -> list[Work]:
    """The pairs of the batch this process now holds: not completed meanwhile, not failed since this launch
    began (whoever ran it), and claimed for this process."""
    held = []
    for work in batch:
        status, _ = state(work.pair, work.cfg)
        if status == "complete":
            continue
        error = os.path.join(work.pair.dir, ERROR_FILE)
        if os.path.exists(error) and os.path.getmtime(error) >= since:
            continue
        work.claim, owner = claims.take(work.pair.dir, stale)
        if work.claim is None:
            if work.own:
                say(d, f"{work.where}: computed by {claims.describe(owner)}, skipped")
            continue
        status, why = state(work.pair, work.cfg)  # the owner before us may have finished it just now
        if status == "complete":
            heartbeat.drop(work.claim)
            continue
        work.why, work.cfg.resume = why, status == "resumable"
        heartbeat.hold(work.claim)
        held.append(work)
    return held


def batch_key(pc: DictConfig, pair: Pair) -> Optional[BatchKey]:
    """What pairs must share to be optimized together: the grid's setting (a batch takes every setting but the
    images from its first pair), the target size at every scale and the step they resume from. None when the
    content image cannot even be measured (the pair then fails alone, saying why). A video's key is its frame
    size and "video": clips resumed at different frames still share a batch (the frame loop runs the clips at
    their first frame and those past it as two fits of each round)."""
    if pair.video:
        return video_key(pc, pair)
    try:
        size = oriented_size(pc.data.content)
    except UserError:
        return None
    step = 0
    if pc.resume:
        try:
            step = int(checkpoint.load(checkpoint.path_in(pc.output.dir))["nst"]["step"])
        except UserError:
            return None
    return BatchKey(tuple(fit_size(size, s) for s in scale_sizes(pc)), step, pair.setting)


def video_key(pc: DictConfig, pair: Pair) -> Optional[BatchKey]:
    from ..video.decode import read_clip
    try:  # one decoded frame: the frame size (every frame of a clip has it)
        size = read_clip(pc.data.content, pc.data.size, pc.video.start, 1, pc.video.fps).size
    except UserError:
        return None
    return BatchKey((size,), "video", pair.setting)


def batch_limit(cfg: DictConfig, work: "Work", device: Optional[int], sharing: int = 1) -> int:
    """How many pairs like `work` (of its key) go in one batch: sweep.batch, or with `auto` as many as fit on the
    GPU, in its free memory divided between the `sharing` processes that use it (runner/memory.py), with the
    pair's own precision and optim.history (a grid may vary them)."""
    if work.key is None:
        return 1
    if cfg.sweep.batch != "auto":
        return int(cfg.sweep.batch)
    if device is None:
        return 1
    pc = work.cfg
    w, h = max(work.key.sizes, key=lambda s: s[0] * s[1])  # the same size as the run's own check (runner/tiles.py)
    free, _ = torch.cuda.mem_get_info(device)
    n = memory.pictures_that_fit(free, w * h, resolve_precision(str(pc.trainer.precision), "gpu"),
                                 memory.history_units(pc.optim.name, pc.optim.history), sharing, MAX_AUTO_BATCH)
    if n == 1:  # not two whole: block by block (tiling.enabled auto or true), blocks of several may share a VGG call
        n = max(1, tiles.tiled_pictures_that_fit(pc, h, w, memory.batch_budget(free, sharing), MAX_AUTO_BATCH))
    return n


def group(todo: list[Work], limit) -> list[list[Work]]:
    """Batches in the order of their first pair: each holds up to limit(first pair) pairs of one key."""
    open_groups: dict[object, list[Work]] = {}
    batches: list[list[Work]] = []
    for work in todo:
        if work.key is None:
            batches.append([work])
            continue
        members = open_groups.setdefault(work.key, [])
        if not members:
            batches.append(members)
        members.append(work)
        if len(members) >= limit(members[0]):
            del open_groups[work.key]
    return batches
