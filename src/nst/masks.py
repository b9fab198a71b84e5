"""The masks of spatial control (config section `masks:`): read, checked against the content and style images, and
turned into the model's Regions (model/guides.py); and the picture of them over the content that W&B shows.

Every problem is one line and exit status 2 (ConfigError, ImageError), found before any output is written.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from PIL import Image

from .errors import ConfigError, ImageError
from .model.guides import MODES, Regions, mask_tensor
from .images import open_rgb

ASPECT_TOLERANCE = 0.02  # relative difference of width/height a mask may have from its image (rounding of resizes)
COLOURS = [(255, 64, 64), (64, 128, 255), (64, 200, 64), (255, 200, 0), (200, 64, 255), (0, 200, 200)]


def check_config(masks: Any, n_styles: int, is_sweep: bool) -> None:
    """What the config alone can tell: counts, mode, grow. (The images are checked in `load`.)"""
    if masks.mode not in MODES:
        raise ConfigError(f"masks.mode: unknown value '{masks.mode}' (choose {', '.join(MODES)})")
    content, style = list(masks.content), list(masks.style)
    if not content:
        if style:
            raise ConfigError("masks.style: needs masks.content (one content mask per style)")
        return
    if is_sweep:
        raise ConfigError("masks.content: masks are for single runs (train.py); a sweep cannot use them yet")
    if len(content) != n_styles:
        raise ConfigError(f"masks.content: {len(content)} masks for {n_styles} styles (one per entry of data.style, "
                          f"in its order)")
    if style and len(style) != n_styles:
        raise ConfigError(f"masks.style: {len(style)} masks for {n_styles} styles (one per style, null for the whole "
                          f"image)")
    if abs(masks.grow) > 16:
        raise ConfigError(f"masks.grow: at most 16 feature pixels either way, got {masks.grow}")


def _open_mask(path: str, key: str, size: tuple[int, int], of: str) -> Image.Image:
    mask = open_rgb(path).convert("L")
    (w, h), (mw, mh) = size, mask.size
    if abs((mw / mh) / (w / h) - 1) > ASPECT_TOLERANCE:
        raise ImageError(f"{key}: {path} is {mw}x{mh}, another aspect ratio than {of} ({w}x{h})")
    if mask.getextrema()[1] < 128:
        raise ImageError(f"{key}: {path} is all black (white marks where the style goes)")
    return mask


def load(masks: Any, content: Image.Image, styles: list[Image.Image]) -> Optional[Regions]:
    """The Regions of a run, or None without masks. Hard masks (soft=false) must not overlap: a pixel belongs to one
    region at most (pixels in none keep the content only); soft masks may overlap and blend there by their weights."""
    if not masks.content:
        return None
    content_masks = [_open_mask(p, f"masks.content[{i}]", content.size, "the content")
                     for i, p in enumerate(masks.content)]
    style_masks = [None if p is None else _open_mask(p, f"masks.style[{i}]", styles[i].size, f"style {i + 1}")
                   for i, p in enumerate(masks.style)]
    if not masks.soft:
        w, h = content.size
        covered = mask_tensor(content_masks, h, w, soft=False).sum(0)
        if covered.max() > 1:
            share = (covered > 1).float().mean().item()
            raise ImageError(f"masks.content: the masks overlap on {share:.1%} of the image; hard masks must not "
                             f"overlap (or set masks.soft=true to blend the styles there)")
    return Regions(content_masks, style_masks, masks.mode, bool(masks.soft), int(masks.grow))


def overlay(content: Image.Image, regions: Regions) -> Image.Image:
    """The content with each region tinted in its colour (style 1 red, style 2 blue, ...): W&B's first grid
    column."""
    w, h = content.size
    masks = mask_tensor(regions.content, h, w, regions.soft)  # [R, 1, h, w]
    base = torch.frombuffer(bytearray(content.convert("RGB").tobytes()), dtype=torch.uint8).float()
    base = base.view(h, w, 3).permute(2, 0, 1)
    out = base.clone()
    for r in range(masks.shape[0]):
        tint = torch.tensor(COLOURS[r % len(COLOURS)], dtype=torch.float32)[:, None, None]
        alpha = 0.45 * masks[r]
        out = out * (1 - alpha) + tint * alpha
    return Image.fromarray(out.clamp(0, 255).round().byte().permute(1, 2, 0).contiguous().numpy())
