"""Spatial control (Gatys, Ecker, Bethge, Hertzmann and Shechtman, "Controlling Perceptual Factors in Neural Style
Transfer", CVPR 2017): a mask per region, carried to every VGG19 layer as a guidance channel.

A mask [.., 1, H, W] in [0, 1] at the image's size follows the network: a 3x3 convolution (padding 1) and a 2x2
pooling (stride 2, flooring odd sizes, as in vgg.py) per step. How it follows is the mode:
- `simple`: unchanged at convolutions, averaged at poolings (a plain downsampling). Cheap and smooth, but a neuron
  just inside the border also sees the other side: the gradient of a region's term leaks across its border.
- `all`: dilated at convolutions (3x3 max) and poolings (2x2 max): every neuron that sees the region at all.
- `inside`: eroded at convolutions (3x3 min) and poolings (2x2 min, a true erosion; a max-pool would dilate):
  only neurons whose receptive field lies inside the region, so no gradient leaks out of it. Deep layers
  lose a border of about half their receptive field (conv5_1: ~100 px on each side).
The image's own border is neutral: the zero padding of a convolution depends on no pixel.

Soft masks (grey levels) go through the same min/max/mean filters, so they stay weights in [0, 1].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from PIL import Image

from .gram import gram, guided_gram_sums
from .precision import no_autocast
from .vgg import LAYERS, layer_index

MODES = ("inside", "simple", "all")
POOLED_AFTER = {"conv1_2", "conv2_2", "conv3_4", "conv4_4"}  # a 2x2 pooling follows these layers (vgg.py)


@dataclass
class Regions:
    """A picture's regions: one content mask per style (in the order of its styles), optional style masks."""
    content: list[Image.Image]  # mode "L" masks, any size with the content's aspect ratio
    style: list[Optional[Image.Image]] = field(default_factory=list)  # per style: which part gives its statistics
    mode: str = "inside"  # inside | simple | all
    soft: bool = False  # grey levels are weights (False: thresholded at 0.5 after each resize)
    grow: int = 0  # > 0 dilates, < 0 erodes each guide by this many feature pixels at every style layer


def _max3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)  # padding is -inf for max pooling: the border is neutral


def _min3(x: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-x, 3, stride=1, padding=1)


def grown(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """x dilated (pixels > 0) or eroded (< 0) by |pixels| with a square of side 2|pixels| + 1."""
    if pixels == 0:
        return x
    k = 2 * abs(pixels) + 1
    sign = 1.0 if pixels > 0 else -1.0
    return sign * F.max_pool2d(sign * x, k, stride=1, padding=abs(pixels))


def propagate(mask: torch.Tensor, layers: list[str], mode: str = "inside", grow: int = 0) -> dict[str, torch.Tensor]:
    """The guidance channel of each layer in `layers` for `mask` [N, 1, H, W] (any leading batch size N),
    following VGG19's convolutions and poolings in `mode` (see the module's docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown guide mode {mode!r} (choose {', '.join(MODES)})")
    conv = {"inside": _min3, "all": _max3, "simple": lambda t: t}[mode]
    pool = {"inside": lambda t: -F.max_pool2d(-t, 2), "all": lambda t: F.max_pool2d(t, 2),
            "simple": lambda t: F.avg_pool2d(t, 2)}[mode]
    wanted = set(layers)
    last = max(layer_index(k) for k in wanted)
    out: dict[str, torch.Tensor] = {}
    g = mask
    for name in LAYERS[: last + 1]:
        g = conv(g)
        if name in wanted:
            out[name] = grown(g, grow).clamp(0, 1)
        if name in POOLED_AFTER and name != LAYERS[last]:
            g = pool(g)
    return out


def mask_tensor(masks: list[Image.Image], h: int, w: int, soft: bool) -> torch.Tensor:
    """[R, 1, h, w] float32: each mask resized to h x w (bilinear, with antialiasing), thresholded at 0.5 unless
    soft. The masks follow the image at every scale of coarse to fine."""
    rows = []
    for m in masks:
        t = torch.frombuffer(bytearray(m.convert("L").tobytes()), dtype=torch.uint8).float().div(255)
        t = t.view(1, 1, m.size[1], m.size[0])
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        rows.append(t if soft else (t >= 0.5).float())
    return torch.cat(rows)


def content_guides(regions: Regions, h: int, w: int, layers: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """For a target of h x w: the guides of each style layer [R, 1, h', w'] and each region's share of the image
    [R] (the mean of its mask: the region weight, see Objective)."""
    masks = mask_tensor(regions.content, h, w, regions.soft)
    return propagate(masks, layers, regions.mode, regions.grow), masks.mean((1, 2, 3))


def empty_layers(guides: dict[str, torch.Tensor], names: list[str], what: str = "region") -> dict[str, list[int]]:
    """The regions (rows of each guide) that are all zero at a layer, with one warning line for all of them: their
    term at that layer is dropped (an eroded region can vanish at the deep layers of a small image)."""
    empty = {k: rows for k, g in guides.items()
             if (rows := [r for r in range(g.shape[0]) if not bool(g[r].detach().cpu().any())])}
    if empty:
        where = ", ".join(f"{names[r]} at {k}" for k, rows in empty.items() for r in rows)
        warnings.warn(f"masks: the {what} is empty (eroded away at this size), its style loss leaves out that layer: "
                      f"{where}", stacklevel=3)
    return empty


def guided_gram(features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """G_r = (F g)(F g)^T / sum(g^2) for features [B, N, H, W] and a guide [B or 1, 1, H, W]: [B, N, N]."""
    area = guide.square().sum((1, 2, 3)).to(torch.float64 if features.dtype == torch.float64 else torch.float32)
    return guided_gram_sums(features, guide) / area.clamp_min(1e-12)[:, None, None]


@torch.no_grad()
def region_targets(regions: Regions, styles: list[torch.Tensor], blend: list[float], h: int, w: int,
                   layers: list[str], extract: Callable[[torch.Tensor, list[str]], dict[str, torch.Tensor]],
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """One picture's region targets for a target of h x w: each region's style Gram [R, N, N] (guided by its style
    mask, if any) and guide [R, 1, h', w'] by layer, and the region weights [R].

    A region's weight is its share of the image times its style weight (data.style_weights, equal by default):
    with area-normalised Grams, each pixel then feels the same style pressure against the content as in a run
    without masks, whatever the size of its region, and a single all-white mask is that run exactly. `styles` are
    the style images [1, 3, H, W] on the extractor's device."""
    guides, area = content_guides(regions, h, w, layers)
    names = [f"style {r + 1}" for r in range(len(styles))]
    empty_layers(guides, names, "region")
    grams: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
    for r, image in enumerate(styles):
        feats = extract(image, layers)
        mask = regions.style[r] if r < len(regions.style) else None
        style_guides = None
        if mask is not None:
            style_guides = propagate(mask_tensor([mask], *image.shape[-2:], regions.soft).to(image.device), layers,
                                     regions.mode, regions.grow)
            for k in empty_layers(style_guides, [names[r]], "style mask"):
                guides[k][r] = 0.0  # no statistics to match there: the layer is left out for this region
        with no_autocast(image.device.type):
            for k in layers:
                grams[k].append(gram(feats[k]) if style_guides is None else guided_gram(feats[k], style_guides[k]))
    weights = area * torch.tensor(blend) * len(blend)
    return {k: torch.cat(v) for k, v in grams.items()}, guides, weights


def batch_region_targets(pictures: list, styles: list[list[torch.Tensor]], h: int, w: int, layers: list[str],
                         extract: Callable, device: torch.device):
    """region_targets of each picture (anything with .regions and .blend) stacked into a batch on `device`: Grams
    [B, R, N, N] and guides [B, R, 1, h', w'] by layer, weights [B, R]."""
    made = [region_targets(p.regions, s, p.blend, h, w, layers, extract) for p, s in zip(pictures, styles)]
    if len({len(m[2]) for m in made}) != 1:
        raise ValueError("the pictures of a batch must have the same number of regions")
    grams, guides = ({k: torch.stack([m[i][k] for m in made]).to(device) for k in layers} for i in (0, 1))
    return grams, guides, torch.stack([m[2] for m in made]).to(device)
