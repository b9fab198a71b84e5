"""Quality controls, each shown in numbers: style blends, style scale, the initial image, pooling, coarse-to-fine
(the colour modes are in test_color.py)."""

import pytest
import torch

from helpers import CONTENT, STYLE, STYLE2
from helpers.train import FAST, stylized
from nst.config import load_config
from nst.images import to_tensor
from nst.runner.loop import module_for

def test_blend_weights_one_zero_equal_the_single_style_run(tmp_path):
    common = ["data.size=48", "trainer.max_steps=4", "trainer.precision=32"]
    single = stylized(tmp_path, "single", *common)
    blend = stylized(tmp_path, "blend", *common, f"data.style=[{STYLE},{STYLE2}]", "data.style_weights=[1,0]")
    other = stylized(tmp_path, "other", *common, f"data.style=[{STYLE},{STYLE2}]", "data.style_weights=[0,1]")
    a, b, c = (to_tensor(r.image) for r in (single, blend, other))
    assert (a - b).abs().max().item() <= 1 / 255
    assert (a - c).abs().max().item() > 10 / 255  # the weights matter


def test_style_scale_sets_the_style_image_size():
    sizes = {}
    for scale in (0.5, 1.0):
        cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=128",
                                 f"data.style_scale={scale}", *FAST])
        module = module_for(cfg)
        sizes[scale] = max(module.style_at(module.pictures[0].styles[0], module.style_side(0)).shape[-2:])
    assert sizes == {0.5: 64, 1.0: 128}


@pytest.mark.parametrize("init", ["noise", "style", CONTENT])
def test_init_choices_start_from_the_right_image(init):
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=64", f"init={init}", *FAST])
    module = module_for(cfg)
    content = module.content_at(0)
    assert module.target.shape == content.shape
    same = torch.allclose(module.target, content, atol=1e-6)
    assert same == (init == CONTENT)


def test_avg_pooling_is_used_and_optimizes(tmp_path):
    """Average pooling gives other features than max pooling (so another loss from the same start), and its
    loss falls."""
    avg = stylized(tmp_path, "avg", "model.pooling=avg", "data.size=48", "trainer.max_steps=3")
    top = stylized(tmp_path, "max", "model.pooling=max", "data.size=48", "trainer.max_steps=3")
    assert avg.metrics["loss"] < avg.metrics["initial_loss"]
    assert avg.metrics["initial_loss"] != pytest.approx(top.metrics["initial_loss"], rel=1e-3)


@pytest.mark.slow
def test_coarse_to_fine_beats_one_scale_for_the_same_compute(tmp_path):
    """Equal compute: a VGG pass costs time in proportion to pixels (see make bench), so 30 steps each at
    80, 113 and 160 px cost as much as 53 steps at 160 px. Real weights, float32, one shared evaluator.

    From noise, where the coarse scales have the large structures to paint: 5-7% lower over runs whose starts
    differ by 1e-6..1e-4. From the content image the two end within about 1% of each other, inside the spread
    that L-BFGS makes of rounding differences, so the sign there depends on rounding."""
    real = ["model.weights=caffe", "trainer.precision=32", "data.size=160", "init=noise"]
    multi = stylized(tmp_path, "multi", *real, "scales.min=80", "scales.steps=30", "trainer.max_steps=90")
    sizes = [(80, 60), (113, 85), (160, 120)]
    budget = sum(30 * w * h for w, h in sizes) / (160 * 120)
    single = stylized(tmp_path, "single", *real, "scales.min=0", f"trainer.max_steps={round(budget)}")
    assert multi.metrics["size"] == single.metrics["size"] == [120, 160]
    assert multi.metrics["loss"] < single.metrics["loss"]
