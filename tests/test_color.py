"""Colour control (nst.model.color, color.preserve): luminance-only transfer keeps the content's chroma and
optimizes grey images; histogram matching moves the style's colour statistics onto the content's."""

import torch
from PIL import Image

from helpers import CONTENT, STYLE
from helpers.train import stylized
from nst.config import load_config
from nst.images import open_rgb, to_tensor
from nst.model import color
from nst.runner.job import prepare_inputs

def test_luminance_mode_keeps_the_content_chroma(tmp_path):
    result = stylized(tmp_path, "lum", "color.preserve=luminance", "data.size=64", "trainer.max_steps=5")
    out = to_tensor(result.image)
    content = to_tensor(open_rgb(CONTENT).resize(result.image.size, Image.Resampling.BILINEAR))
    chroma_out, chroma_content = color.rgb_to_ycbcr(out)[:, 1:], color.rgb_to_ycbcr(content)[:, 1:]
    assert (chroma_out - chroma_content).abs().mean() < 0.01  # only 8-bit rounding and clamping
    # ...while the luma did change: it is the stylized part.
    assert (color.luminance(out) - color.luminance(content)).abs().mean() > 0.01


def test_luminance_mode_optimizes_grey_images():
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "color.preserve=luminance"])
    inputs = prepare_inputs(cfg)
    for im in [inputs.content, *inputs.styles]:
        t = to_tensor(im)
        assert torch.allclose(t[:, 0], t[:, 1]) and torch.allclose(t[:, 1], t[:, 2])


def test_histogram_mode_moves_style_colour_statistics_to_the_content():
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "color.preserve=histogram"])
    inputs = prepare_inputs(cfg)
    content = to_tensor(open_rgb(CONTENT)).reshape(3, -1).double()
    before = to_tensor(open_rgb(STYLE)).reshape(3, -1).double()
    after = to_tensor(inputs.styles[0]).reshape(3, -1).double()
    def gap(x):
        return (x.mean(1) - content.mean(1)).abs().max().item(), (torch.cov(x) - torch.cov(content)).abs().max().item()
    mean_before, cov_before = gap(before)
    mean_after, cov_after = gap(after)
    assert mean_after < 0.02 and mean_after < mean_before / 4
    assert cov_after < 0.005 and cov_after < cov_before / 4
