"""Optical flow between the original frames, warping along it, and where it can be trusted (Ruder et al. 2016).

Flow comes from OpenCV's DIS optical flow (CPU, offline), computed once per frame pair at the frame size and
cached in `output.dir/flow/` (one .npz per pair: the flow and the reliability weight), so a resumed run never
recomputes it. Warping is torch's grid_sample, so it runs wherever the tensors are.

Conventions: a flow f from frame a to frame b is [2, H, W] (x then y, in pixels): pixel p of a shows what is at
p + f(p) in b. To bring the stylized frame t-j into frame t we sample it at p + f_{t->t-j}(p) (backward warping).

The reliability weight c in {0, 1} of frame t against frame t-j is 0 where
- the forward and backward flows disagree (a disocclusion, Sundaram et al. 2010):
  |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5, with w^ the flow t->t-j and w~ the flow t-j->t sampled at p + w^(p);
- at motion boundaries: |grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002;
- where p + w^(p) falls outside frame t-j (what enters the picture at its borders).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..files import atomic_write

DISOCCLUSION = (0.01, 0.5)  # Sundaram et al.'s forward-backward consistency: factor, constant (pixels^2)
MOTION_BOUNDARY = (0.01, 0.002)  # and motion boundaries: factor, constant


def dis_flow(a: Image.Image, b: Image.Image) -> torch.Tensor:
    """The flow [2, H, W] from frame a to frame b (DIS, OpenCV's medium preset, on grey images)."""
    import cv2

    ga = cv2.cvtColor(np.asarray(a.convert("RGB")), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(np.asarray(b.convert("RGB")), cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(ga, gb, None)
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))).float()


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """grid_sample's grid [B, H, W, 2] for sampling at p + flow(p), flow [B, 2, H, W]."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    x = (xs + flow[:, 0]) * (2 / max(w - 1, 1)) - 1
    y = (ys + flow[:, 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack([x, y], -1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` [B, C, H, W] sampled at p + flow(p) (bilinear; outside the frame: the nearest border pixel), flow
    [B, 2, H, W] or [2, H, W]."""
    if flow.dim() == 3:
        flow = flow[None].expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image, _grid(flow.to(image.dtype)), mode="bilinear", padding_mode="border",
                         align_corners=True)


def inside(flow: torch.Tensor) -> torch.Tensor:
    """[1, H, W] bool: p + flow(p) lies in the frame (flow [2, H, W])."""
    _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x, y = xs + flow[0], ys + flow[1]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))[None]


def reliability(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """[1, H, W] float32 in {0, 1}: where frame t (backward = flow t->s) can be compared with frame s warped
    into it (forward = flow s->t); see the module docstring."""
    w_hat = backward
    w_tilde = warp(forward[None], backward)[0]
    a, k = DISOCCLUSION
    disoccluded = (w_tilde + w_hat).square().sum(0) > a * (w_tilde.square().sum(0) + w_hat.square().sum(0)) + k
    dx = F.pad(w_hat[:, :, 1:] - w_hat[:, :, :-1], (0, 1, 0, 0))
    dy = F.pad(w_hat[:, 1:, :] - w_hat[:, :-1, :], (0, 0, 0, 1))
    a, k = MOTION_BOUNDARY
    boundary = dx.square().sum(0) + dy.square().sum(0) > a * w_hat.square().sum(0) + k
    return (~(disoccluded | boundary)[None] & inside(w_hat)).float()


def long_term(weights: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s long-term weights [J, 1, H, W] from each earlier frame's reliability (nearest first): a
    pixel counts against the nearest earlier frame where it is reliable, c_j - sum of the nearer ones, at least 0."""
    nearer = torch.cumsum(weights, 0) - weights
    return (weights - nearer).clamp_min(0)


def warping_error(current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor, weight: torch.Tensor) -> float:
    """Mean squared difference (per pixel, averaged over channels; images in [0, 1]) between `current` [1, 3, H, W]
    and `previous` warped into it along `flow` (t->t-1 of the original frames), over the reliable pixels."""
    diff = (current - warp(previous, flow)).square().mean(1, keepdim=True)[0]
    return float((diff * weight).sum() / weight.sum().clamp_min(1.0))


class FlowCache:
    """The flow t->t-j and its reliability weight for every frame pair the run needs, computed once and kept in
    `folder` (flow/00005_1.npz: frame 5 against frame 4, 1-based like frames/00005.png)."""

    def __init__(self, folder: str, frames: list[Image.Image]):
        self.folder, self.frames = folder, frames
        self.computed = 0  # pairs computed by this process (the others came from the folder)
        self.seconds = 0.0

    def path(self, t: int, j: int) -> str:
        return os.path.join(self.folder, f"{t + 1:05d}_{j}.npz")

    def get(self, t: int, j: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow [2, H, W], weight [1, H, W]) of frame t (0-based) against frame t - j."""
        path = self.path(t, j)
        h, w = self.frames[t].size[1], self.frames[t].size[0]
        loaded = self._load(path, (h, w))
        if loaded is not None:
            return loaded
        import time
        start = time.perf_counter()
        backward = dis_flow(self.frames[t], self.frames[t - j])
        forward = dis_flow(self.frames[t - j], self.frames[t])
        weight = reliability(backward, forward)
        self.seconds += time.perf_counter() - start
        self.computed += 1

        def write(f):
            np.savez_compressed(f, flow=backward.numpy().astype(np.float32), weight=weight.numpy().astype(np.uint8))
        atomic_write(path, write)
        return backward, weight

    @staticmethod
    def _load(path: str, hw: tuple[int, int]) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        if not os.path.isfile(path):
            return None
        try:
            with np.load(path) as data:
                flow, weight = torch.from_numpy(data["flow"]).float(), torch.from_numpy(data["weight"]).float()
        except Exception:  # a damaged cache file: compute it again
            return None
        if tuple(flow.shape) != (2, *hw) or tuple(weight.shape) != (1, *hw):
            return None  # another frame size: not this run's
        if not torch.isfinite(flow).all() or not ((weight == 0) | (weight == 1)).all():
            return None  # NaN, inf or a weight that is not 0/1: not a flow this program wrote
        return flow, weight
