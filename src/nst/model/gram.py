"""The Gram matrix and its sums: F F^T of a layer's features, one per image of a batch, in float32.

Grams are float32 whatever the features' precision: bf16 features are multiplied with float32 output where torch
has it (`bmm(..., out_dtype=float32)`, CUDA), else in float32 (the CPU); a bf16 Gram would round every entry to
3.9e-3, and near convergence the style term training sees would be several times the true one. float16 features
go to float32 first: their Grams overflow.
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


def float32_gram_product(f: torch.Tensor) -> torch.Tensor:
    """F^T F (batched) as float32, from bf16 (or float32) F [B, M, N], without rounding the result to bf16; on the
    CPU, bf16 F is copied to float32 once (not once per operand)."""
    if f.dtype == torch.bfloat16 and _BMM_OUT_DTYPE and f.device.type != "cpu":
        return torch.bmm(f.transpose(1, 2), f, out_dtype=torch.float32)
    if f.dtype == torch.bfloat16:
        f = f.float()
    return torch.bmm(f.transpose(1, 2), f)


class _GramProduct(torch.autograd.Function):
    """F^T F for F [B, M, N], with the symmetric backward F (dG + dG^T): one product instead of two."""

    @staticmethod
    def forward(ctx, f):
        ctx.save_for_backward(f)
        return float32_gram_product(f)

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


def guided_gram_sums(features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """(F g)(F g)^T for features [B, N, H, W] and a region's guide [B or 1, 1, H, W]: [B, N, N]. A sum over
    positions, so it is additive over blocks of positions (tiling) like gram_sums; divide by sum(g^2) for G_r."""
    return gram_sums(features * guide.to(features.dtype))
