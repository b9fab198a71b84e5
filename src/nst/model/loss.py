"""The loss of Gatys et al.: its terms (content, style, guided style, total variation, temporal; one value per
image of a batch, float32 with autocast off) and the Objective, the loss of a batch of pictures and everything
it compares against, in one nn.Module. The Gram matrices the style terms compare are gram.py's.

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

from .gram import gram_sums, guided_gram_sums, wide
from .precision import no_autocast
from .vgg import POOLS_BEFORE


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
    # Spatial control (Gatys et al. 2017, model/guides.py): regions with a style each, through guided Grams
    # (set_targets with guides). 0: no masks. Each region's style loss is a part of its own, style/region<r>.
    regions: int = 0

    @property
    def part_names(self) -> list[str]:
        """The loss parts `Objective.forward` returns, in a fixed order."""
        temporal = ["temporal_loss"] if self.temporal_weight > 0 else []
        regions = [f"style/region{r}" for r in range(self.regions)]
        return (["loss", "content_loss", "style_loss", "tv_loss", *temporal] + [f"style/{k}" for k in self.style_layers]
                + regions)

    @property
    def layers(self) -> list[str]:
        """The VGG19 layers the loss reads, each once."""
        return list(dict.fromkeys(self.content_layers + self.style_layers))


def positions(layer: str, h: int, w: int) -> int:
    """Positions (height x width) of a layer's feature map for an h x w image: halved by each pooling before it."""
    pools = POOLS_BEFORE[layer]
    return (h >> pools) * (w >> pools)


def gatys_style_loss(g: torch.Tensor, a: torch.Tensor, n: int) -> torch.Tensor:
    """E_l = sum((G - A)^2) / (4 N^2 M^2) per image [B], for Grams [B, N, N] already divided by M."""
    return ((g - a) ** 2).sum((1, 2)) / (4.0 * n * n)


def style_term(features: torch.Tensor, target_sums: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * sum((F F^T - T)^2) per image: a layer's weighted style loss in the fewest kernels.

    With T = M A (the style's Gram times the positions of these features) and scale = weight / (4 N^2 M^2 norm),
    it equals weight * gatys_style_loss(gram(features), A, N) / norm: the 1/M of the Gram folds into `scale`.
    """
    return style_from_sums(gram_sums(features), target_sums, scale)


def style_from_sums(sums: torch.Tensor, target_sums: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * sum((S - T)^2) per image, for Gram sums S = F F^T (of a whole image, or added up block by block)."""
    return ((sums - target_sums) ** 2).sum((1, 2)) * scale


def style_output_grad(features: torch.Tensor, diff: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The gradient of style_from_sums with respect to `features` [B, N, H, W] that are part of the image whose Gram
    sums differ from the target by `diff` [B, N, N] (symmetric): 4 scale dS F, in the features' dtype and layout."""
    b, n, h, w = features.shape
    f = features.permute(0, 2, 3, 1).reshape(b, h * w, n)
    dtype = f.dtype if f.dtype in (torch.float32, torch.float64, torch.bfloat16) else torch.float32
    m = (diff * (4.0 * scale)[:, None, None]).to(dtype)
    return torch.bmm(f.to(dtype), m).reshape(b, h, w, n).permute(0, 3, 1, 2).to(features.dtype)


def content_output_grad(features: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The gradient of content_term with respect to `features`: 2 scale (F - T), in the features' dtype."""
    return ((wide(features) - target) * (2.0 * scale)[:, None, None, None]).to(features.dtype)


def guided_style_term(features: torch.Tensor, guide: torch.Tensor, target_sums: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """One region's weighted style loss at one layer, per image [B]: scale * sum(((F g)(F g)^T - T)^2).

    With S = sum(g^2) (the region's positions), T = S A_r and scale = weight / (4 N^2 S^2 norm), it is
    weight * sum((G_r - A_r)^2) / (4 N^2 norm) for the guided Gram G_r = (F g)(F g)^T / S of Gatys et al. 2017.
    An all-ones guide gives style_term exactly. The one place a guided contribution is computed."""
    return ((guided_gram_sums(features, guide) - target_sums) ** 2).sum((1, 2)) * scale


def content_term(features: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """scale * sum((F - T)^2) per image [B]. With scale = weight / (elements x norm) it is the weighted mean
    squared feature error (the paper's 1/2 sum, divided by the element count so size does not matter).

    Computed on [B, H, W, C] views: for channels_last features they are contiguous, so the gradient comes back
    channels_last too. Done on [B, C, H, W] the gradient comes back in the other layout, and adding it to the
    deeper layers' gradient costs ten times a plain add.
    """
    f, t = features.permute(0, 2, 3, 1), target.permute(0, 2, 3, 1)
    return ((wide(f) - t) ** 2).sum((1, 2, 3)) * scale


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels per image [B]: smooths high-frequency noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return (dx ** 2).mean((1, 2, 3)) + (dy ** 2).mean((1, 2, 3))


def temporal_term(image: torch.Tensor, warped: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    """Ruder et al.'s temporal loss per image [B]: scale * sum over the earlier frames j and pixels of
    c_j (x - w_j)^2, with image [B, 3, H, W], the earlier stylized frames warped into this one [B, J, 3, H, W] and
    their per-pixel weights [B, J, 1, H, W]; scale = weight / D (D = 3 H W, the image's dimension)."""
    diff = image[:, None] - warped
    return (weights * diff.square()).flatten(1).sum(1) * scale


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
    def set_targets(self, content: dict[str, torch.Tensor], grams: dict[str, torch.Tensor], h: int, w: int,
                    guides: dict[str, torch.Tensor] | None = None, region_weights: torch.Tensor | None = None) -> None:
        """Targets for a target image of h x w: content features [B, C, H', W'] by content layer, blended style
        Grams [B, N, N] (already divided by their own positions, see gram.gram) by style layer.

        With regions (settings.regions = R): grams are [B, R, N, N] (each region's style Gram, guided by its style
        mask if any), guides [B, R, 1, H', W'] by style layer (model/guides.py) and region_weights [B, R]."""
        s = self.settings
        if s.regions:
            self._set_content(content)
            self._set_regions(grams, guides, region_weights)
            self.ready = True
            return
        self._set_content(content)
        for k, lw in zip(s.style_layers, s.style_layer_weights):
            a = grams[k] if grams[k].dtype == torch.float64 else grams[k].float()  # float64 stays (tests)
            n, m = a.shape[-1], positions(k, h, w)
            # Normaliser: a layer's loss divided by what it would be for an all-zero feature map.
            norm = (gatys_style_loss(torch.zeros_like(a), a, n).clamp_min(1e-12) if s.normalize
                    else torch.ones_like(a[:, 0, 0]))
            self._put(f"style_target_{k}", a * m)  # style_term compares F F^T (not divided by M) with M A
            self._put(f"style_norm_{k}", norm)
            self._put(f"style_scale_{k}", s.style_weight * lw / (4.0 * n * n * m * m * norm))
        self.ready = True

    def _set_content(self, content: dict[str, torch.Tensor]) -> None:
        s = self.settings
        for k in s.content_layers:
            t = content[k].float()
            norm = t.square().flatten(1).mean(1).clamp_min(1e-12) if s.normalize else torch.ones_like(t[:, 0, 0, 0])
            self._put(f"content_target_{k}", t)
            self._put(f"content_norm_{k}", norm)
            self._put(f"content_scale_{k}", s.content_weight / (len(s.content_layers) * t[0].numel() * norm))

    def _set_regions(self, grams: dict[str, torch.Tensor], guides: dict[str, torch.Tensor] | None,
                     region_weights: torch.Tensor | None) -> None:
        """Per region r and layer: the guide g, T = S A_r with S = sum(g^2) (Gatys' area normalisation: a small
        region is not squeezed out) and the factor weight_r x layer weight / (4 N^2 S^2 norm_r), norm_r being the
        loss of an all-zero feature map against A_r. A region empty at a layer (S = 0) gets factor 0 there."""
        s = self.settings
        if guides is None or region_weights is None:
            raise ValueError("Objective: LossSettings.regions needs guides and region_weights in set_targets")
        # (layer, region) whose guide is all ones in every picture: the plain term, the same kernels as without masks
        whole = torch.stack([(guides[k][:, r] == 1).all() for k in s.style_layers for r in range(s.regions)]).tolist()
        self.whole = {(k, r): whole[i * s.regions + r] for i, k in enumerate(s.style_layers) for r in range(s.regions)}
        for k, lw in zip(s.style_layers, s.style_layer_weights):
            a, g = grams[k], guides[k]
            if a.dim() != 4 or a.shape[:2] != (self.batch, s.regions) or g.shape[:3] != (self.batch, s.regions, 1):
                raise ValueError(f"Objective: {s.regions} regions of {self.batch} pictures, got Grams "
                                 f"{tuple(a.shape)} and guides {tuple(g.shape)} at {k}")
            a = a if a.dtype == torch.float64 else a.float()
            n = a.shape[-1]
            area = g.square().sum((2, 3, 4)).to(a.dtype)  # [B, R]
            norm = (gatys_style_loss(torch.zeros_like(a).flatten(0, 1), a.flatten(0, 1), n).view_as(area)
                    .clamp_min(1e-12) if s.normalize else torch.ones_like(area))
            m = g.shape[-2] * g.shape[-1]  # all positions: area where a guide is all ones (then as without masks)
            whole = all(self.whole[k, r] for r in range(s.regions))
            per_area = (s.style_weight * lw / (4.0 * n * n * m * m * norm) if whole else
                        s.style_weight * lw / (4.0 * n * n * area.clamp_min(1e-12) ** 2 * norm))
            factor = per_area * region_weights.to(a.dtype)
            self._put(f"style_guide_{k}", g.to(a.dtype).contiguous())
            self._put(f"style_target_{k}", a * area[..., None, None])
            self._put(f"style_norm_{k}", norm)
            self._put(f"style_scale_{k}", torch.where(area > 0, factor, torch.zeros_like(factor)))

    @torch.no_grad()
    def set_temporal(self, warped: torch.Tensor, weights: torch.Tensor) -> None:
        """A video frame's temporal targets (Ruder et al. 2016): the earlier stylized frames warped into this one
        [B, J, 3, H, W] (J = 1: the previous frame only) and their per-pixel weights [B, J, 1, H, W] in [0, 1] (0 at
        disocclusions and motion boundaries). [B, 3, H, W] and [B, 1, H, W] mean J = 1. They become buffers, like
        every other target, on the module's device now (it may already be on the GPU) and after any move."""
        if self.settings.temporal_weight <= 0:
            raise ValueError("Objective: set_temporal needs LossSettings.temporal_weight > 0")
        if warped.dim() == 4:
            warped, weights = warped[:, None], weights[:, None]
        if warped.shape[0] != self.batch or weights.shape[:2] != warped.shape[:2] or weights.shape[2] != 1:
            raise ValueError(f"Objective: temporal targets {tuple(warped.shape)} and weights {tuple(weights.shape)} "
                             f"for a batch of {self.batch}")
        device = self.zero.device
        self._put("temporal_target", warped.to(device, torch.float32, non_blocking=True).contiguous())
        self._put("temporal_weights", weights.to(device, torch.float32, non_blocking=True).contiguous())
        self.temporal = True

    def _region_terms(self, features: dict[str, torch.Tensor], parts: dict[str, torch.Tensor]) -> None:
        """style/<layer> (summed over regions) and style/region<r> (summed over layers) of the guided terms."""
        s = self.settings
        regions: list[torch.Tensor | float] = [0.0] * s.regions
        for k in s.style_layers:
            guide, target, scale = (self.buffer(kind, k) for kind in ("style_guide", "style_target", "style_scale"))
            terms = [style_term(features[k], target[:, r], scale[:, r]) if self.whole[k, r]
                     else guided_style_term(features[k], guide[:, r], target[:, r], scale[:, r])
                     for r in range(s.regions)]
            parts[f"style/{k}"] = sum(terms)
            for r, t in enumerate(terms):
                regions[r] = regions[r] + t
        parts.update({f"style/region{r}": t for r, t in enumerate(regions)})

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
            if s.regions:
                self._region_terms(features, terms)
            else:
                for k in s.style_layers:
                    terms[f"style/{k}"] = style_term(features[k], self.buffer("style_target", k),
                                                     self.buffer("style_scale", k))
        return self.combine(terms, image)

    def combine(self, terms: dict[str, torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss parts from the feature terms ("content_loss", each "style/<layer>" and, with masks, each
        "style/region<r>", [B]) and the terms of the whole image (total variation, temporal). Tiled evaluation
        (model/tiling.py) sums the feature terms block by block and comes in here."""
        if not self.ready:
            raise RuntimeError("Objective: set_targets must be called before the loss")
        s = self.settings
        parts: dict[str, torch.Tensor] = {k: v for k, v in terms.items() if k != "content_loss"}
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
