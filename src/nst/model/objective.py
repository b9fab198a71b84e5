"""The objective: the loss of a batch of pictures, and everything it compares against, in one nn.Module.

At each scale the module is given the content features and the blended style Grams of every picture
(`set_targets`). It keeps them, each layer's normaliser and one factor per layer and picture (loss weight x
layer weight x the 1/(4 N^2 M^2) of Gatys et al. / normaliser) as registered buffers. Buffers follow the
module through `.to()`, `.cpu()`, precision plugins and Lightning's device moves (its teardown moves the
whole LightningModule to the CPU), so the loss never meets a target left behind on another device.
They are non-persistent: rebuilt from the images, never part of a checkpoint.

Row b of every buffer is picture b's own problem (a batch is B independent pictures). `forward` takes the
VGG19 features of the target and returns the named loss parts, each [B], float32 with autocast off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .losses import content_term, gatys_style_loss, style_term, temporal_term, tv_loss
from .precision import no_autocast


@dataclass
class LossSettings:
    """What is optimized: layers, weights, and how the loss is normalised (the same for every picture)."""
    content_layers: list[str]
    style_layers: list[str]
    style_layer_weights: list[float]  # sums to 1
    content_weight: float
    style_weight: float
    tv_weight: float
    normalize: bool
    # Video (Ruder et al. 2016): weight of the temporal loss against the earlier stylized frames warped into this
    # one (set_temporal). 0: not a video frame, and no temporal_loss part.
    temporal_weight: float = 0.0

    @property
    def part_names(self) -> list[str]:
        """The loss parts `Objective.forward` returns, in a fixed order."""
        temporal = ["temporal_loss"] if self.temporal_weight > 0 else []
        return ["loss", "content_loss", "style_loss", "tv_loss", *temporal] + [f"style/{k}" for k in self.style_layers]

    @property
    def layers(self) -> list[str]:
        """The VGG19 layers the loss reads, each once."""
        return list(dict.fromkeys(self.content_layers + self.style_layers))


def positions(layer: str, h: int, w: int) -> int:
    """Positions (height x width) of a layer's feature map for an h x w image: halved by each pooling before it."""
    pools = int(layer[4]) - 1  # conv{block}_{i}: one 2x2 pooling before each block after the first
    return (h >> pools) * (w >> pools)


class Objective(nn.Module):
    """Content + style (+ total variation) loss of B pictures against targets held as buffers."""

    def __init__(self, settings: LossSettings, batch: int):
        super().__init__()
        self.settings = settings
        self.batch = batch
        self.ready = False  # targets set (set_targets) for the current scale
        self.temporal = False  # temporal targets set (set_temporal): a video frame after the first
        self.register_buffer("zero", torch.zeros(batch), persistent=False)  # a term that is off, per picture

    def _put(self, name: str, value: torch.Tensor) -> None:
        self.register_buffer(name, value, persistent=False)  # replaces the previous scale's

    def buffer(self, kind: str, layer: str) -> torch.Tensor:
        """One of the per-layer buffers: kind is content_target, content_scale, content_norm, style_target,
        style_scale or style_norm."""
        return getattr(self, f"{kind}_{layer}")

    @torch.no_grad()
    def set_targets(self, content: dict[str, torch.Tensor], grams: dict[str, torch.Tensor], h: int, w: int) -> None:
        """Targets for a target image of h x w: content features [B, C, H', W'] by content layer, blended style
        Grams [B, N, N] (already divided by their own positions, see losses.gram) by style layer."""
        s = self.settings
        for k in s.content_layers:
            t = content[k].float()
            norm = t.square().flatten(1).mean(1).clamp_min(1e-12) if s.normalize else torch.ones_like(t[:, 0, 0, 0])
            self._put(f"content_target_{k}", t)
            self._put(f"content_norm_{k}", norm)
            self._put(f"content_scale_{k}", s.content_weight / (len(s.content_layers) * t[0].numel() * norm))
        for k, lw in zip(s.style_layers, s.style_layer_weights):
            a = grams[k].float()
            n, m = a.shape[-1], positions(k, h, w)
            # Normaliser: a layer's loss divided by what it would be for an all-zero feature map.
            norm = (gatys_style_loss(torch.zeros_like(a), a, n).clamp_min(1e-12) if s.normalize
                    else torch.ones_like(a[:, 0, 0]))
            self._put(f"style_target_{k}", a * m)  # style_term compares F F^T (not divided by M) with M A
            self._put(f"style_norm_{k}", norm)
            self._put(f"style_scale_{k}", s.style_weight * lw / (4.0 * n * n * m * m * norm))
        self.ready = True

    @torch.no_grad()
    def set_temporal(self, warped: torch.Tensor, weights: torch.Tensor) -> None:
        """A video frame's temporal targets (Ruder et al. 2016): the earlier stylized frames warped into this one
        [B, J, 3, H, W] (J = 1: the previous frame only) and their per-pixel weights [B, J, 1, H, W] in [0, 1] (0 at
        disocclusions and motion boundaries). [B, 3, H, W] and [B, 1, H, W] mean J = 1. They become buffers, like
        every other target, so they follow the module to its device."""
        if self.settings.temporal_weight <= 0:
            raise ValueError("Objective: set_temporal needs LossSettings.temporal_weight > 0")
        if warped.dim() == 4:
            warped, weights = warped[:, None], weights[:, None]
        if warped.shape[0] != self.batch or weights.shape[:2] != warped.shape[:2] or weights.shape[2] != 1:
            raise ValueError(f"Objective: temporal targets {tuple(warped.shape)} and weights {tuple(weights.shape)} "
                             f"for a batch of {self.batch}")
        self._put("temporal_target", warped.float().contiguous())
        self._put("temporal_weights", weights.float().contiguous())
        self.temporal = True

    def clear_temporal(self) -> None:
        for name in ("temporal_target", "temporal_weights"):
            self._buffers.pop(name, None)
        self.temporal = False

    def forward(self, features: dict[str, torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss parts of each picture, named as in LossSettings.part_names, each [B] and weighted as they enter
        `loss`; `image` is the target (for total variation)."""
        if not self.ready:
            raise RuntimeError("Objective: set_targets must be called before the loss")
        s = self.settings
        terms: dict[str, torch.Tensor] = {}
        with no_autocast(image.device.type):
            terms["content_loss"] = sum(content_term(features[k], self.buffer("content_target", k),
                                                     self.buffer("content_scale", k)) for k in s.content_layers)
            for k in s.style_layers:
                terms[f"style/{k}"] = style_term(features[k], self.buffer("style_target", k),
                                                 self.buffer("style_scale", k))
        return self.combine(terms, image)

    def combine(self, terms: dict[str, torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss parts from the feature terms ("content_loss" and each "style/<layer>", [B]) and the terms of
        the whole image (total variation, temporal). Tiled evaluation (model/tiling.py) sums the feature terms
        block by block and comes in here."""
        if not self.ready:
            raise RuntimeError("Objective: set_targets must be called before the loss")
        s = self.settings
        parts: dict[str, torch.Tensor] = {f"style/{k}": terms[f"style/{k}"] for k in s.style_layers}
        with no_autocast(image.device.type):
            content = terms["content_loss"]
            style = sum(parts[f"style/{k}"] for k in s.style_layers)
            tv = s.tv_weight * tv_loss(image.float()) if s.tv_weight > 0 else self.zero
            total = content + style + tv if s.tv_weight > 0 else content + style
            if s.temporal_weight > 0:
                parts["temporal_loss"] = self.zero
                if self.temporal:
                    if self.temporal_target.shape[-2:] != image.shape[-2:]:
                        raise RuntimeError(f"Objective: temporal targets of {tuple(self.temporal_target.shape[-2:])}"
                                           f" for an image of {tuple(image.shape[-2:])}")
                    h, w = image.shape[-2:]
                    parts["temporal_loss"] = temporal_term(image.float(), self.temporal_target,
                                                           self.temporal_weights, s.temporal_weight / (3 * h * w))
                    total = total + parts["temporal_loss"]
        parts.update(loss=total, content_loss=content, style_loss=style, tv_loss=tv)
        return {k: parts[k] for k in s.part_names}
