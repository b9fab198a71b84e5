"""Colour control: luminance-only transfer and colour-statistics matching (Gatys et al. 2016).

All functions take and return float tensors [1, 3, H, W] (RGB in [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Full-range BT.601 (JPEG) RGB <-> YCbCr.
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]])
_OFFSET = torch.tensor([0.0, 0.5, 0.5])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    m = _RGB2YCC.to(x)
    return torch.einsum("ij,bjhw->bihw", m, x) + _OFFSET.to(x).view(1, 3, 1, 1)


def ycbcr_to_rgb(y: torch.Tensor) -> torch.Tensor:
    m = torch.linalg.inv(_RGB2YCC.double()).to(y)
    return torch.einsum("ij,bjhw->bihw", m, y - _OFFSET.to(y).view(1, 3, 1, 1))


def luminance(x: torch.Tensor) -> torch.Tensor:
    """[1, 1, H, W] luma."""
    return rgb_to_ycbcr(x)[:, :1]


def gray3(y: torch.Tensor) -> torch.Tensor:
    """A luma channel as a 3-channel image VGG can read."""
    return y.expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luma to the content's mean and standard deviation."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mean) * (content_y.std() / s_std) + content_y.mean()).clamp(0, 1)


def restore_chroma(target: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The target's luma with the content's chroma (content resized to the target's size)."""
    if content.shape[-2:] != target.shape[-2:]:
        content = F.interpolate(content, size=target.shape[-2:], mode="bilinear", align_corners=False)
    ycc = rgb_to_ycbcr(content)
    ycc = torch.cat([luminance(target), ycc[:, 1:]], dim=1)
    return ycbcr_to_rgb(ycc).clamp(0, 1)


def _sqrtm(c: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp_min(1e-8)
    d = vals.rsqrt() if inverse else vals.sqrt()
    return vecs @ torch.diag(d) @ vecs.T


def match_color(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Affine recolouring of `source` so its RGB mean and covariance equal `reference`'s."""
    s = source.double().reshape(3, -1)
    r = reference.double().reshape(3, -1)
    mu_s, mu_r = s.mean(1, keepdim=True), r.mean(1, keepdim=True)
    cov_s = torch.cov(s) + 1e-6 * torch.eye(3, dtype=s.dtype)
    cov_r = torch.cov(r) + 1e-6 * torch.eye(3, dtype=r.dtype)
    a = _sqrtm(cov_r) @ _sqrtm(cov_s, inverse=True)
    out = a @ (s - mu_s) + mu_r
    return out.reshape(source.shape).to(source.dtype).clamp(0, 1)
