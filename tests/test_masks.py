"""Spatial control with masks (Gatys et al. 2017): guide propagation, guided Grams, and the promises of the modes."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from PIL import Image

from helpers import CONTENT, ROOT, STYLE
from helpers.train import assert_one_line_error, cli, tiny
from nst.config import load_config
from nst.images import to_tensor
from nst.model.guides import Regions, guided_gram, propagate, region_targets
from nst.model.loss import LossSettings, Objective
from nst.model.vgg import load_vgg19
from nst.runner.run import run

LAYERS = ["conv1_1", "conv2_1", "conv3_1"]


def run_config(args):
    return run(load_config(None, [str(a) for a in args]))


def half(w: int, h: int, left: bool, share: float = 0.5) -> Image.Image:
    m = Image.new("L", (w, h), 0)
    cut = round(w * share)
    m.paste(255, (0, 0, cut, h) if left else (cut, 0, w, h))
    return m


def settings(regions: int, layers=LAYERS, content_weight=0.0) -> LossSettings:
    return LossSettings(["conv2_1"], list(layers), [1 / len(layers)] * len(layers), content_weight, 10.0, 0.0, True,
                        regions=regions)


def guided_objective(extractor, regions: Regions, styles, h, w, content_image, blend=None):
    blend = blend or [1 / len(styles)] * len(styles)
    grams, guides, weights = region_targets(regions, styles, blend, h, w, LAYERS, extractor)
    obj = Objective(settings(len(styles)), 1)
    obj.set_targets(extractor(content_image, ["conv2_1"]), {k: v[None] for k, v in grams.items()}, h, w,
                    {k: v[None] for k, v in guides.items()}, weights[None])
    return obj


def image_gradient(extractor, obj, image, part="loss"):
    x = image.clone().requires_grad_(True)
    parts = obj(extractor(x, obj.settings.layers), x)
    parts[part].sum().backward()
    return parts, x.grad


@pytest.fixture(scope="module")
def vgg():
    return load_vgg19("random", last_layer="conv3_1", seed=1)


@pytest.mark.parametrize("mode", ["inside", "simple"])
def test_inside_mode_gradient_is_exactly_zero_outside_the_region_and_simple_mode_leaks(vgg, mode):
    torch.manual_seed(0)
    h, w = 48, 96
    style = torch.rand(1, 3, 48, 48)
    regions = Regions([half(w, h, left=True)], mode=mode)
    obj = guided_objective(vgg, regions, [style], h, w, torch.rand(1, 3, h, w))
    _, grad = image_gradient(vgg, obj, torch.rand(1, 3, h, w))
    inside, outside = grad[..., : w // 2].abs(), grad[..., w // 2:].abs()
    assert inside.max() > 0
    if mode == "inside":
        assert outside.max() == 0.0  # exactly: no neuron with a nonzero guide sees a pixel on the right
    else:  # simple: the neurons by the border see across it (conv3_1's receptive field reaches ~18 px beyond)
        assert outside.max() > 1e-3 * inside.max()
        assert outside[..., :4].max() > 0 and outside[..., 24:].max() == 0


H, W = 24, 32  # the image; a layer of block b has (H, W) / 2^(b-1) positions


def _at(k):
    return H >> (int(k[4]) - 1), W >> (int(k[4]) - 1)


def _features(seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(1, 8, *_at(k), generator=g, dtype=torch.float64) for k in LAYERS}


def _loss_and_grad(obj, feats):
    feats = {k: v.clone().requires_grad_(True) for k, v in feats.items()}
    loss = obj(feats, torch.zeros(1, 3, H, W, dtype=torch.float64))["loss"]
    loss.sum().backward()
    return loss.detach(), torch.cat([feats[k].grad.flatten() for k in LAYERS])


def _grams(seed, regions):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(regions, 8, 40, generator=g, dtype=torch.float64)
    return {k: (f @ f.transpose(1, 2) / 40)[None] for k in LAYERS}


def test_an_all_ones_mask_gives_todays_objective_within_1e_10():
    feats, grams = _features(0), _grams(1, 1)
    content = {"conv2_1": _features(2)["conv2_1"]}
    plain = Objective(settings(0, content_weight=1.0), 1)
    plain.set_targets(content, {k: v[:, 0] for k, v in grams.items()}, H, W)
    guided = Objective(settings(1, content_weight=1.0), 1)
    ones = {k: torch.ones(1, 1, 1, *_at(k), dtype=torch.float64) for k in LAYERS}
    guided.set_targets(content, grams, H, W, ones, torch.ones(1, 1, dtype=torch.float64))
    (l0, g0), (l1, g1) = _loss_and_grad(plain, feats), _loss_and_grad(guided, feats)
    assert torch.allclose(l1, l0, rtol=1e-10, atol=0) and torch.allclose(g1, g0, rtol=1e-10, atol=1e-14)
    assert l0.item() > 0


def test_swapping_two_regions_and_their_styles_gives_the_same_loss_and_gradient():
    feats, grams = _features(3), _grams(4, 2)
    content = {"conv2_1": _features(5)["conv2_1"]}
    g = torch.Generator().manual_seed(6)
    left = {k: (torch.rand(1, 1, *_at(k), generator=g, dtype=torch.float64) > 0.3).double() for k in LAYERS}
    guides = {k: torch.stack([left[k], 1 - left[k]], 1) for k in LAYERS}  # [1, 2, 1, h, w]
    weights = torch.tensor([[0.7, 0.3]], dtype=torch.float64)
    results = []
    for order in ([0, 1], [1, 0]):
        obj = Objective(settings(2, content_weight=1.0), 1)
        obj.set_targets(content, {k: v[:, order] for k, v in grams.items()}, H, W,
                        {k: v[:, order] for k, v in guides.items()}, weights[:, order])
        results.append(_loss_and_grad(obj, feats))
    (l0, g0), (l1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-12) and torch.allclose(g0, g1, rtol=1e-12, atol=1e-15)
    # and both regions pull: neither term is squeezed out (the neural-style-pt #46 failure)
    obj = Objective(settings(2), 1)
    obj.set_targets(content, grams, H, W, guides, weights)
    parts = obj(feats, torch.zeros(1, 3, H, W, dtype=torch.float64))
    assert parts["style/region0"].item() > 0 and parts["style/region1"].item() > 0


def test_guided_grams_of_a_stationary_texture_do_not_depend_on_the_regions_area(vgg):
    g = torch.Generator().manual_seed(7)
    texture = torch.rand(1, 3, 8, 8, generator=g).repeat(1, 1, 20, 40)  # 160 x 320, stationary with period 8
    feats = vgg(texture, LAYERS)
    grams = {}
    for share, (rh, rw) in ((0.2, (80, 128)), (0.6, (128, 240))):  # centred rectangles, away from the borders
        mask = torch.zeros(1, 1, 160, 320)
        top, left = (160 - rh) // 2, (320 - rw) // 2
        mask[..., top:top + rh, left:left + rw] = 1
        assert mask.mean().item() == pytest.approx(share)
        guides = propagate(mask, LAYERS, "inside")
        grams[share] = {k: guided_gram(feats[k], guides[k]) for k in LAYERS}
    for k in LAYERS:
        a, b = grams[0.2][k], grams[0.6][k]
        assert (a - b).norm() / b.norm() < 0.01, k
        unnormalised = a * 0.2 / 0.6  # dividing by all positions instead would shrink the small region's Gram
        assert (unnormalised - b).norm() / b.norm() > 0.5


def test_a_region_empty_at_a_deep_layer_is_left_out_with_one_warning(vgg):
    h, w = 32, 64
    regions = Regions([half(w, h, True, 0.1), half(w, h, False, 0.1)])  # 6 px wide on the left: gone at conv3_1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = guided_objective(vgg, regions, [torch.rand(1, 3, 32, 32)] * 2, h, w, torch.rand(1, 3, h, w))
    lines = [str(c.message) for c in caught if "masks:" in str(c.message)]
    assert len(lines) == 1 and "style 1 at conv3_1" in lines[0] and "style 2" not in lines[0], lines
    assert obj.style_scale_conv3_1[0, 0] == 0 and obj.style_scale_conv3_1[0, 1] > 0
    parts, _ = image_gradient(vgg, obj, torch.rand(1, 3, h, w))
    assert torch.isfinite(parts["loss"]).all()


def test_the_guides_are_buffers_that_follow_the_module(vgg):
    h, w = 32, 64
    obj = guided_objective(vgg, Regions([half(w, h, True)]), [torch.rand(1, 3, 32, 32)], h, w, torch.rand(1, 3, h, w))
    obj.to("meta")
    feats = {k: torch.zeros(1, v.shape[1], *v.shape[-2:], device="meta")
             for k, v in vgg(torch.rand(1, 3, h, w), LAYERS).items()}
    parts = obj(feats, torch.zeros(1, 3, h, w, device="meta"))  # a buffer left on the CPU would raise here
    assert parts["style/region0"].device.type == "meta"


@pytest.mark.parametrize("mode", ["inside", "all", "simple"])
def test_the_modes_erode_dilate_or_keep_a_square(mode):
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    g = propagate(mask, ["conv1_2", "conv2_1"], mode)
    area = {k: v.sum().item() for k, v in g.items()}
    expected = {"inside": (28 * 28, 12 * 12), "all": (36 * 36, 20 * 20), "simple": (32 * 32, 16 * 16)}[mode]
    assert (area["conv1_2"], area["conv2_1"]) == expected


@pytest.mark.slow  # three runs: about 5 s on an idle 2-core machine, several times that on a busy one
def test_a_run_with_one_all_white_mask_equals_the_run_without_masks(tmp_path, solid_image):
    white = solid_image("white.png", size=(64, 48), color=255, mode="L")
    plain = run_config(tiny(tmp_path / "plain", "scales.min=0", steps=10))
    masked = run_config(tiny(tmp_path / "masked", "scales.min=0", f"masks.content=[{white}]", steps=10))
    for key in ("initial_loss", "loss"):
        assert masked.metrics[key] == pytest.approx(plain.metrics[key], rel=1e-4), key
    assert masked.metrics["style/region0"] == pytest.approx(masked.metrics["style_loss"], rel=1e-6)
    cfg = load_config(str(tmp_path / "masked" / "config.yaml"), [f"output.dir={tmp_path / 'again'}"])
    assert list(cfg.masks.content) == [white]  # config.yaml repeats the run, masks included
    assert run(cfg).metrics["loss"] == pytest.approx(masked.metrics["loss"], rel=1e-5)


@pytest.mark.parametrize("case, words", [
    ("count", ["masks.content", "1 masks for 2 styles"]),
    ("aspect", ["masks.content[0]", "aspect ratio"]),
    ("black", ["masks.content[1]", "all black"]),
    ("overlap", ["masks.content", "overlap"]),
])
def test_bad_masks_are_one_line_and_exit_2(tmp_path, capsys, solid_image, case, words):
    w, h = Image.open(CONTENT).size
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    half(w, h, True).save(a)
    half(w, h, False).save(b)
    masks = {"count": [a], "aspect": [solid_image("sq.png", size=(50, 50), color=255, mode="L"), b],
             "black": [a, solid_image("k.png", size=(w, h), color=0, mode="L")],
             "overlap": [a, solid_image("all.png", size=(w, h), color=255, mode="L")]}[case]
    args = tiny(tmp_path / "out", f"data.style=[{STYLE},{STYLE}]", f"masks.content=[{','.join(map(str, masks))}]")
    code, err = cli(capsys, args)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


def procedural_styles(folder):
    """Red/white horizontal stripes and blue dots on yellow, 64 x 64: two colour signatures easy to tell apart."""
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    stripes = torch.where(((y // 4) % 2 == 0)[None], torch.tensor([0.9, 0.1, 0.1])[:, None, None],
                          torch.ones(3, 1, 1))
    dots = ((y % 8 - 3.5) ** 2 + (x % 8 - 3.5) ** 2 < 5)[None]
    blue, yellow = torch.tensor([0.1, 0.2, 0.9])[:, None, None], torch.tensor([0.95, 0.85, 0.1])[:, None, None]
    dotted = torch.where(dots, blue, yellow)
    paths = []
    for name, t in (("stripes.png", stripes), ("dots.png", dotted)):
        Image.fromarray((t.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / name)
        paths.append(str(folder / name))
    return paths


def signature(image: torch.Tensor) -> torch.Tensor:
    """Per column of [3, H, W]: the share of red pixels (stripes) minus the share of yellow or blue ones (dots)."""
    r, g, b = image
    red = (r > 0.55) & (g < 0.45) & (b < 0.45)
    dots = ((r > 0.55) & (g > 0.55) & (b < 0.45)) | ((b > 0.55) & (r < 0.45))
    return red.float().mean(0) - dots.float().mean(0)


def border_zone(image: torch.Tensor) -> float:
    """Half-width in pixels of the zone about the middle where a column (smoothed over 4) carries less than half of its
    side's signature (the median of that side's outer half): stripes on the left, dots on the right."""
    w = image.shape[-1]
    s = torch.nn.functional.avg_pool1d(signature(image)[None, None], 4, 1, padding=2)[0, 0, :w]
    mid = w // 2
    left, right = s[: mid // 2].median(), s[w - mid // 2:].median()
    weak = [abs(c + 0.5 - mid) for c in range(4, w - 4)  # (the image's own edges aside)
            if (s[c] < left / 2 if c < mid else s[c] > right / 2)]
    return max(weak, default=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("mode, zone", [("inside", 8), ("simple", 8)])
def test_two_regions_keep_each_styles_colour_signature_on_their_side(tmp_path, mode, zone):
    h, w = 64, 128
    Image.new("RGB", (w, h), (128, 128, 128)).save(tmp_path / "flat.png")
    half(w, h, True).save(tmp_path / "left.png")
    half(w, h, False).save(tmp_path / "right.png")
    styles = procedural_styles(tmp_path)
    result = run_config([f"data.content={tmp_path / 'flat.png'}", f"data.style=[{','.join(styles)}]",
                         f"masks.content=[{tmp_path / 'left.png'},{tmp_path / 'right.png'}]", f"masks.mode={mode}",
                         f"data.size={w}", "scales.min=0", "trainer.max_steps=120", "loss.content_weight=0.01",
                         "model.style_layers=[conv1_1,conv2_1,conv3_1]", "logger.mode=disabled",
                         "trainer.enable_progress_bar=false", "trainer.precision=32", f"output.dir={tmp_path / 'out'}"])
    image = to_tensor(result.image)[0]
    width = border_zone(image)
    print(f"\n{mode}: border zone {width} px each side of the middle (image {w} px wide)")
    assert width <= zone
    assert signature(image)[: w // 2 - zone].mean() > 0.2 and signature(image)[w // 2 + zone:].mean() < -0.2


def test_soft_grown_and_style_masks_change_the_targets_as_they_say(vgg):
    h, w = 32, 64
    soft = Image.linear_gradient("L").resize((w, h)).transpose(Image.Transpose.ROTATE_90)  # grey ramp, left to right
    style = torch.rand(1, 3, 32, 32)
    base = region_targets(Regions([half(w, h, True)]), [style], [1.0], h, w, LAYERS, vgg)
    grown = region_targets(Regions([half(w, h, True)], grow=2), [style], [1.0], h, w, LAYERS, vgg)
    assert (grown[1]["conv2_1"].sum() > base[1]["conv2_1"].sum()) and base[2].item() == pytest.approx(0.5)
    ramp = region_targets(Regions([soft], soft=True, mode="simple"), [style], [1.0], h, w, LAYERS, vgg)
    values = ramp[1]["conv1_1"].unique()
    assert len(values) > 10 and 0 < values.min() < values.max() < 1  # grey levels stay weights
    top = Image.new("L", (32, 32), 0)
    top.paste(255, (0, 0, 32, 16))
    styled = region_targets(Regions([half(w, h, True)], style=[top]), [style], [1.0], h, w, LAYERS, vgg)
    assert not torch.allclose(styled[0]["conv1_1"], base[0]["conv1_1"])  # the painting's top half only
    assert torch.equal(styled[1]["conv1_1"], base[1]["conv1_1"])  # the content guides are the content mask's


def test_the_overlay_tints_each_region_and_keeps_the_rest(tmp_path):
    from nst.masks import overlay
    content = Image.new("RGB", (40, 30), (128, 128, 128))
    shown = overlay(content, Regions([half(40, 30, True, 0.25), half(40, 30, False, 0.75)]))
    left, right = shown.getpixel((2, 15)), shown.getpixel((38, 15))
    assert shown.size == content.size and left[0] > 160 and right[2] > 160 and shown.getpixel((20, 15)) == (128,) * 3


@pytest.mark.parametrize("extra, words", [
    (["sweep.contents=[a.jpg]", "sweep.styles=[b.jpg]"], ["masks.content", "sweep"]),
    (["masks.mode=outside"], ["masks.mode", "inside"]),
    (["masks.style=[x.png]"], ["masks.style", "needs masks.content"]),
    ([f"data.content={os.path.join(ROOT, 'assets', 'bigbuckbunny.mp4')}"], ["masks.content", "video"]),
])
def test_mask_settings_the_config_can_check_are_one_line(tmp_path, capsys, extra, words):
    masks = [] if "masks.style=[x.png]" in extra else [f"masks.content=[{CONTENT}]"]
    code, err = cli(capsys, tiny(tmp_path / "out", *masks, *extra))
    assert_one_line_error(code, err, *words)
