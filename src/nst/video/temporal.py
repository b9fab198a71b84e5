"""Temporal consistency (Ruder, Dosovitskiy and Brox, 2016): the earlier stylized frames warped into frame t and
their per-pixel weights (the targets of the temporal loss), and the warping error that measures it.

The flows are of the original frames, known from the start: frame t+1's are computed in a helper thread while
frame t optimizes (`compute_ahead`), so that on a GPU the next frame does not wait for the CPU's DIS flow. The
values are the same either way (FlowCache.get, in one thread or the other)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Iterable

import torch
from PIL import Image

from ..images import to_tensor
from ..model import color
from . import flow as flows
from .job import VideoJob


def temporal_targets(job: VideoJob, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The earlier stylized frames warped into frame t [J, 3, H, W] and their long-term weights [J, 1, H, W]
    (video.long_term; a distance before the first frame has weight 0)."""
    warped, weights = [], []
    h, w = job.clip.size[1], job.clip.size[0]
    for j in job.cfg.video.long_term:
        if t - j == -1 and job.seam is not None:  # the previous chunk's last frame
            flow, weight = job.seam_flow()
            previous = job.seam[0]
            if job.cfg.color.preserve == "luminance":
                previous = color.gray3(color.luminance(previous))
            warped.append(flows.warp(previous, flow))
            weights.append(weight[None])
            continue
        if t - j < 0:
            warped.append(torch.zeros(1, 3, h, w))
            weights.append(torch.zeros(1, 1, h, w))
            continue
        flow, weight = job.ready.pop((t, j)) if (t, j) in job.ready else job.flows.get(t, j)
        warped.append(flows.warp(job.previous[t - j], flow))
        weights.append(weight[None])
    return torch.cat(warped), flows.long_term(torch.cat(weights))


def compute_ahead(pool: Executor, job: VideoJob, t: int) -> None:
    """Start computing the flows frame t needs (video.long_term) in `pool`'s thread."""
    for j in job.cfg.video.long_term:
        if t - j >= 0 and (t, j) not in job.ahead and (t, j) not in job.ready:
            job.ahead[(t, j)] = pool.submit(timed_flow, job.flows, t, j)


def timed_flow(cache: flows.FlowCache, t: int, j: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    before = cache.seconds
    flow, weight = cache.get(t, j)
    return flow, weight, cache.seconds - before


def wait_ahead(job: VideoJob, t: int) -> float:
    """Wait for the flows of frame t computed ahead (an error in computing one is raised here); the seconds that
    computing them took."""
    seconds = 0.0
    for key in [k for k in job.ahead if k[0] == t]:
        flow, weight, took = job.ahead.pop(key).result()
        job.ready[key] = flow, weight
        seconds += took
    return seconds


def warping_errors(job: VideoJob, frames: Iterable[Image.Image]) -> list[float]:
    """The warping error of each frame t >= 2 against frame t-1, along the flow of the original frames (a pass
    over `frames` that holds two of them at a time)."""
    out, before = [], None
    for t, im in enumerate(frames):
        now = to_tensor(im)
        if before is not None:
            flow, weight = job.flows.get(t, 1)
            out.append(flows.warping_error(now, before, flow, weight))
        before = now
    return out
