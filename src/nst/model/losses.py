"""Loss terms of Gatys et al.: Gram matrices, content, style and total variation, one value per image of a batch.

Losses are float32 with autocast off. Grams are float32 whatever the features' precision: bf16 features are
multiplied with float32 output where torch has it (`bmm(..., out_dtype=float32)`, CUDA), else in float32 (the CPU);
a bf16 Gram would round every entry to 3.9e-3, and near convergence the style term training sees would be
several times the true one. float16 features go to float32 first: their Grams overflow.
"""

from __future__ import annotations

import torch


def _has_bmm_out_dtype() -> bool:
    try:  # torch >= 2.8, on CUDA (and the meta device); the CPU has no kernel for it
        x = torch.empty(1, 1, 1, dtype=torch.bfloat16, device="meta")
        return torch.bmm(x, x, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError):
        return False


_BMM_OUT_DTYPE = _has_bmm_out_dtype()


def float32_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b (batched) as float32, from bf16 (or float32) inputs, without rounding the result to bf16."""
    if a.dtype == torch.bfloat16 and _BMM_OUT_DTYPE and a.device.type != "cpu":
        return torch.bmm(a, b, out_dtype=torch.float32)
    if a.dtype == torch.bfloat16:
        a, b = a.float(), b.float()
    return torch.bmm(a, b)


class _GramProduct(torch.autograd.Function):
    """F^T F for F [B, M, N], with the symmetric backward F (dG + dG^T): one product instead of two."""

    @staticmethod
    def forward(ctx, f):
        ctx.save_for_backward(f)
        return float32_product(f.transpose(1, 2), f)

    @staticmethod
    def backward(ctx, grad):
        (f,) = ctx.saved_tensors
        grad = grad.to(f.dtype)
        return torch.bmm(f, grad + grad.transpose(1, 2))


def wide(t: torch.Tensor) -> torch.Tensor:
    """float32 for a loss, unless already float64 (the exactness tests run in float64)."""
    return t if t.dtype == torch.float64 else t.float()


def gram_sums(features: torch.Tensor) -> torch.Tensor:
    """F F^T for features [B, N, H, W] (N channels, H*W positions): [B, N, N] in float32 (float64 stays)."""
    b, n, h, w = features.shape
    f = features.permute(0, 2, 3, 1).reshape(b, h * w, n)  # a free view for channels_last features
    if f.dtype not in (torch.float32, torch.float64, torch.bfloat16):
        f = f.float()
    g = _GramProduct.apply(f)
    return g if g.dtype == torch.float64 else g.float()


def gram(features: torch.Tensor) -> torch.Tensor:
    """G = F F^T / M for features [B, N, H, W] (M = H*W positions); [B, N, N].

    Dividing by M keeps the numbers small; gatys_style_loss accounts for it exactly.
    """
    return gram_sums(features) / (features.shape[-2] * features.shape[-1])


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


def guided_gram_sums(features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """(F g)(F g)^T for features [B, N, H, W] and a region's guide [B or 1, 1, H, W]: [B, N, N]. A sum over
    positions, so it is additive over blocks of positions (tiling) like gram_sums; divide by sum(g^2) for G_r."""
    return gram_sums(features * guide.to(features.dtype))


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
