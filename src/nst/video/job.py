"""One clip to stylize (a video run's, or a sweep's video pair): its config, frames, styles, flow cache, what is
done, its W&B run, and how it ended."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import torch
from omegaconf import DictConfig
from PIL import Image

from ..runner.settings import Settings, settings_of
from . import flow as flows
from .decode import Clip


@dataclass
class VideoResult:
    metrics: dict
    run_dir: str


@dataclass
class VideoJob:
    """One clip to stylize: its config, frames, styles, flow cache, what is done, and its W&B run."""
    cfg: DictConfig
    clip: Clip
    styles: list[Image.Image]
    extra_config: Optional[dict] = None
    frames_done: list[dict] = field(default_factory=list)  # each written frame's numbers (progress.json)
    previous: dict[int, torch.Tensor] = field(default_factory=dict)  # stylized frames later ones warp, [1, 3, H, W]
    run: object = None
    error: str = ""
    started: float = field(default_factory=time.time)
    result: Optional[VideoResult] = None
    flows: Optional[flows.FlowCache] = None
    batch: int = 1  # clips of the batch it ran in (fit_videos), for metrics.json
    # A chunk of a longer clip (a sweep's video.chunk): the previous chunk's last stylized frame [1, 3, H, W] and
    # its original frame. Its first frame is then a later frame: that frame warped is its start and its temporal
    # target, and it runs video.steps_later steps at one scale.
    seam: Optional[tuple[torch.Tensor, Image.Image]] = None
    _seam_flow: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    record: Optional[dict] = None  # video/resume.inputs_record, computed once
    from_seam: bool = False  # a resumed chunk whose first frame came from the previous chunk's (progress.json)
    # flows of the next frame computed while this one optimizes (video/temporal.py): (t, j) -> Future, then
    # (t, j) -> (flow, weight) once waited for
    ahead: dict = field(default_factory=dict)
    ready: dict = field(default_factory=dict)

    def seam_flow(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow, weight) of the first frame against the previous chunk's last original frame."""
        if self._seam_flow is None:
            first, before = self.clip.frames[0], self.seam[1].resize(self.clip.size, Image.Resampling.LANCZOS)
            backward = flows.dis_flow(first, before)
            self._seam_flow = backward, flows.reliability(backward, flows.dis_flow(before, first))
        return self._seam_flow

    @property
    def dir(self) -> str:
        return self.cfg.output.dir

    @cached_property
    def settings(self) -> Settings:
        """The settings of the video's config (its first frame's schedule), resolved once."""
        return settings_of(self.cfg)

    @property
    def n(self) -> int:
        return len(self.clip.frames)

    @property
    def next(self) -> int:
        return len(self.frames_done)

    @property
    def global_step(self) -> int:
        return sum(f["steps"] for f in self.frames_done)

    def frame_path(self, t: int) -> str:
        return os.path.join(self.dir, "frames", f"{t + 1:05d}.png")

    def identity(self) -> dict:
        """What progress.json must match for a resume to continue it."""
        return {"source": os.path.abspath(self.clip.source), "start": self.clip.start, "frames": self.n,
                "size": list(self.clip.size), "temporal": bool(self.cfg.video.temporal)}
