"""Exact tiled evaluation of the loss and its gradient, for images whose VGG19 activations do not fit in memory.

After Galerne, Raad, Lezama and Morel, "Scaling Painting Style Transfer" (EGSR 2024). The content and style
terms are sums over feature positions (a Gram matrix is sum_p F_p F_p^T), so they can be summed block by block:

- the image is cut into blocks whose *interiors* tile it; each block is cut out with a *margin* around its
  interior (clipped at the image's edges) and goes through VGG19 alone;
- pass 1, without gradients: each block adds its interior's feature positions to every style layer's Gram sum
  and to every content layer's squared error. That gives the whole image's loss and each layer's Gram
  difference dS = S - T;
- pass 2 (only when a gradient is wanted): each block goes through VGG19 again and is differentiated with the
  gradient of the *whole* image's loss with respect to its interior's features: 4 scale F dS on a style layer,
  2 scale (F - T) on a content layer. The block's whole input gradient (margin included) is added to the image's
  gradient.

Why this is exact, and why the margin only needs one receptive field (the paper keeps only the interior's input
gradient, which needs two): a feature at an interior position depends on the pixels within the deepest layer's
reach around it, which the margin holds, and the convolutions' zero padding at the image's edges is the same in
a block as in the whole image. So each interior feature, and its derivative with respect to every pixel, is the
whole image's; summing over the blocks' interiors counts every feature position once. Block and margin are
multiples of the deepest layer's stride (16 at conv5_1), so the poolings of a block line up with the image's.

The approximate mode (`exact=False`) is the usual per-tile baseline, for comparison only: each block's interior
Gram against the style's, with no global statistics; it has seams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .gram import gram, gram_sums
from .loss import Objective, content_output_grad, content_term, style_from_sums, style_output_grad
from .precision import no_autocast
from .vgg import CONVS, layer_index


def stride(layer: str) -> int:
    """Input pixels per feature position of a layer: 2 for each pooling before it."""
    return 2 ** (int(layer[4]) - 1)


def reach(layer: str) -> int:
    """How far (in input pixels, beyond its own stride cell) a layer's feature sees: each 3x3 convolution before it
    adds its input's stride on each side (70 px at conv5_1, 38 at conv4_2, 10 at conv3_1)."""
    return sum(2 ** (b - 1) for b, *_ in CONVS[: layer_index(layer) + 1])


def deepest(layers: list[str]) -> str:
    return max(layers, key=layer_index)


def auto_margin(layers: list[str]) -> int:
    """The smallest exact margin: the deepest layer's reach, rounded up to a multiple of its stride."""
    last = deepest(layers)
    return math.ceil(reach(last) / stride(last)) * stride(last)


@dataclass(frozen=True)
class Block:
    inner: tuple[int, int, int, int]  # y0, y1, x0, x1: the part of the image this block accounts for
    outer: tuple[int, int, int, int]  # the same with its margin, clipped to the image: what VGG19 sees


def plan(h: int, w: int, block: int, margin: int) -> list[Block]:
    """Blocks of interior side `block` (the last row and column smaller) covering an h x w image, row by row."""
    blocks = []
    for y0 in range(0, h, block):
        y1 = min(y0 + block, h)
        for x0 in range(0, w, block):
            x1 = min(x0 + block, w)
            blocks.append(Block((y0, y1, x0, x1), (max(0, y0 - margin), min(h, y1 + margin),
                                                   max(0, x0 - margin), min(w, x1 + margin))))
    return blocks


@dataclass(frozen=True)
class Tiling:
    """How a module tiles its evaluations: interior side and margin in px, exact or the per-tile baseline, and
    the smallest image (in pixels) that is tiled (0: every scale that takes more than one block)."""
    block: int
    margin: int
    exact: bool = True
    from_pixels: int = 0

    def blocks(self, h: int, w: int) -> Optional[list[Block]]:
        """The plan for an h x w image, or None when it is evaluated whole (small enough, or a single block)."""
        if h * w < self.from_pixels or (h <= self.block and w <= self.block):
            return None
        return plan(h, w, self.block, self.margin)

    def check(self, layers: list[str]) -> None:
        """A ValueError when the block or margin does not line up with the poolings of the deepest layer."""
        s = stride(deepest(layers))
        if self.block <= 0 or self.block % s or self.margin < 0 or self.margin % s:
            raise ValueError(f"block ({self.block}) and margin ({self.margin}) must be multiples of {s} px, the "
                             f"stride of {deepest(layers)}")


def crop(features: torch.Tensor, layer: str, blk: Block) -> torch.Tensor:
    """The features of a block's interior, out of the features of the block with its margin."""
    s = stride(layer)
    y0, y1, x0, x1 = blk.inner
    oy, ox = blk.outer[0] // s, blk.outer[2] // s
    return features[:, :, y0 // s - oy:y1 // s - oy, x0 // s - ox:x1 // s - ox]


def global_crop(features: torch.Tensor, layer: str, blk: Block) -> torch.Tensor:
    """The same interior, out of features of the whole image (a content target)."""
    s = stride(layer)
    y0, y1, x0, x1 = blk.inner
    return features[:, :, y0 // s:y1 // s, x0 // s:x1 // s]


def cut(image: torch.Tensor, blk: Block) -> torch.Tensor:
    y0, y1, x0, x1 = blk.outer
    return image[:, :, y0:y1, x0:x1]


def _plan_of(tiling: "Tiling | list[Block] | None", image: torch.Tensor) -> Optional[list[Block]]:
    return tiling.blocks(*image.shape[-2:]) if isinstance(tiling, Tiling) else tiling


@torch.no_grad()
def features(extractor, image: torch.Tensor, layers: list[str], tiling: "Tiling | list[Block] | None"
             ) -> dict[str, torch.Tensor]:
    """Whole-image features of `layers` (content targets), computed block by block when `tiling` (a Tiling or a
    plan) says so."""
    blocks = _plan_of(tiling, image)
    if not blocks:
        return extractor(image, layers)
    out: dict[str, torch.Tensor] = {}
    h, w = image.shape[-2:]
    for blk in blocks:
        feats = extractor(cut(image, blk), layers)
        for k in layers:
            f = crop(feats[k], k, blk)
            if k not in out:
                s = stride(k)
                out[k] = f.new_empty(f.shape[0], f.shape[1], h // s, w // s)
            global_crop(out[k], k, blk).copy_(f)
    return out


@torch.no_grad()
def grams(extractor, image: torch.Tensor, layers: list[str], tiling: "Tiling | list[Block] | None"
          ) -> dict[str, torch.Tensor]:
    """Whole-image Grams F F^T / M of `layers` (style targets), summed block by block when `tiling` says so."""
    blocks = _plan_of(tiling, image)
    if not blocks:
        feats = extractor(image, layers)
        with no_autocast(image.device.type):
            return {k: gram(feats[k]) for k in layers}
    sums: dict[str, torch.Tensor] = {}
    h, w = image.shape[-2:]
    for blk in blocks:
        feats = extractor(cut(image, blk), layers)
        with no_autocast(image.device.type):
            for k in layers:
                g = gram_sums(crop(feats[k], k, blk))
                sums[k] = g if k not in sums else sums[k] + g
    return {k: v / ((h // stride(k)) * (w // stride(k))) for k, v in sums.items()}


def evaluate(extractor, objective: Objective, image: torch.Tensor, blocks: list[Block],
             exact: bool = True) -> dict[str, torch.Tensor]:
    """The loss parts of `image` as Objective.forward names them, computed block by block. When autograd wants
    the image's gradient, `loss` carries it: its value is the tiled loss, and its gradient the tiled gradient
    (plus the whole-image terms, total variation and temporal, which the Objective adds on the full image)."""
    if not exact:
        return _approximate(extractor, objective, image, blocks)
    s = objective.settings
    content = 0
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():  # pass 1: the whole image's Gram sums and content error
        for blk in blocks:
            feats = extractor(cut(image, blk), s.layers)  # in the training precision; the loss in float32
            with no_autocast(image.device.type):
                for k in s.content_layers:
                    content = content + content_term(crop(feats[k], k, blk), global_crop(
                        objective.buffer("content_target", k), k, blk), objective.buffer("content_scale", k))
                for k in s.style_layers:
                    g = gram_sums(crop(feats[k], k, blk))
                    sums[k] = g if k not in sums else sums[k] + g
    terms = {"content_loss": content}
    diffs = {}
    with no_autocast(image.device.type):
        for k in s.style_layers:
            terms[f"style/{k}"] = style_from_sums(sums[k], objective.buffer("style_target", k),
                                                  objective.buffer("style_scale", k))
            diffs[k] = sums[k] - objective.buffer("style_target", k)
    grad = None
    if torch.is_grad_enabled() and image.requires_grad:
        grad = _gradient(extractor, objective, image, blocks, diffs)
    return _finish(objective, terms, image, grad)


def _gradient(extractor, objective: Objective, image: torch.Tensor, blocks: list[Block],
              diffs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pass 2: the gradient of the whole image's content and style loss with respect to the image."""
    s = objective.settings
    grad = torch.zeros_like(image, memory_format=torch.contiguous_format)
    source = image.detach()
    for blk in blocks:
        x = cut(source, blk).clone().requires_grad_(True)
        with torch.enable_grad():
            feats = extractor(x, s.layers)
        outs: dict[str, torch.Tensor] = {}
        grads: dict[str, torch.Tensor] = {}
        with no_autocast(image.device.type):
            for k in s.layers:
                outs[k] = crop(feats[k], k, blk)
                g = 0
                if k in s.content_layers:
                    target = global_crop(objective.buffer("content_target", k), k, blk)
                    g = g + content_output_grad(outs[k], target, objective.buffer("content_scale", k))
                if k in s.style_layers:
                    g = g + style_output_grad(outs[k], diffs[k], objective.buffer("style_scale", k))
                grads[k] = g.to(outs[k].dtype)
        (gx,) = torch.autograd.grad(list(outs.values()), x, list(grads.values()))
        cut(grad, blk).add_(gx)
        del feats, outs, grads, gx, x
    return grad


def _approximate(extractor, objective: Objective, image: torch.Tensor, blocks: list[Block]) -> dict[str, torch.Tensor]:
    """The per-tile baseline: each block's interior Gram (per position) against the style's, blocks weighted by
    their share of the positions; content as in the exact mode. Not the whole image's objective: it has seams.
    Each block is differentiated on its own (one block's activations at a time), like pass 2."""
    s = objective.settings
    h, w = image.shape[-2:]
    want_grad = torch.is_grad_enabled() and image.requires_grad
    grad = torch.zeros_like(image, memory_format=torch.contiguous_format) if want_grad else None
    terms: dict[str, torch.Tensor] = {}
    for blk in blocks:
        x = cut(image.detach(), blk).clone().requires_grad_(want_grad)
        with torch.set_grad_enabled(want_grad):
            feats = extractor(x, s.layers)
        with torch.set_grad_enabled(want_grad), no_autocast(image.device.type):
            part = {"content_loss": sum(content_term(crop(feats[k], k, blk),
                                                     global_crop(objective.buffer("content_target", k), k, blk),
                                                     objective.buffer("content_scale", k)) for k in s.content_layers)}
            for k in s.style_layers:
                f = crop(feats[k], k, blk)
                share = f.shape[-2] * f.shape[-1] / ((h // stride(k)) * (w // stride(k)))  # M_block / M
                # the block's share of scale * (M / M_block)^2 * sum((S_block - share T)^2)
                part[f"style/{k}"] = style_from_sums(gram_sums(f), share * objective.buffer("style_target", k),
                                                     objective.buffer("style_scale", k) / share)
        if want_grad:
            (gx,) = torch.autograd.grad(sum(v.sum() for v in part.values()), x)
            cut(grad, blk).add_(gx)
        for name, v in part.items():
            terms[name] = v.detach() if name not in terms else terms[name] + v.detach()
    return _finish(objective, terms, image, grad)


def _finish(objective: Objective, terms: dict[str, torch.Tensor], image: torch.Tensor,
            grad: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Objective's parts, with the tiled gradient (if any) attached to `loss`: a term whose value is exactly 0
    and whose gradient with respect to the image is `grad`."""
    if grad is not None:
        carrier = (image * grad).flatten(1).sum(1)
        terms["content_loss"] = terms["content_loss"] + (carrier - carrier.detach())
    return objective.combine(terms, image)


def blocks_per_evaluation(tiling: Optional[Tiling], sizes: list[tuple[int, int]]) -> list[int]:
    """VGG19 blocks an evaluation takes at each (h, w) scale; 1: the whole image at once."""
    return [len((tiling.blocks(h, w) if tiling is not None else None) or [None]) for h, w in sizes]


def record(tiling: Optional[Tiling], sizes: list[tuple[int, int]]) -> Optional[dict]:
    """What metrics.json says about tiling: blocks per evaluation at each scale (1: the whole image), block, margin."""
    if tiling is None:
        return None
    return {"blocks_per_evaluation": blocks_per_evaluation(tiling, sizes),
            "block": tiling.block, "margin": tiling.margin, "exact": tiling.exact}
