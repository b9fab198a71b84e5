"""Temporal consistency (Ruder, Dosovitskiy and Brox, 2016): the earlier stylized frames warped into frame t and
their per-pixel weights (the targets of the temporal loss), and the warping error that measures it."""

from __future__ import annotations

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
        flow, weight = job.flows.get(t, j)
        warped.append(flows.warp(job.previous[t - j], flow))
        weights.append(weight[None])
    return torch.cat(warped), flows.long_term(torch.cat(weights))


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
