"""Temporal consistency (nst.video.flow and the temporal loss term): warping, the reliability weight, long-term
weights, the temporal loss as a buffer of the module on any device."""

from __future__ import annotations

import pytest
import torch

from helpers import CONTENT, STYLE
from helpers.clips import SHIFT, pan
from nst.config import load_config
from nst.images import to_tensor
from nst.video import flow as flows


# ----------------------------------------------------------------------------- flow, warp, reliability

def test_the_warped_previous_frame_of_a_pan_is_the_next_frame_away_from_the_borders():
    frames = pan(2, size=(64, 48))
    a, b = to_tensor(frames[0]), to_tensor(frames[1])
    known = torch.zeros(2, 48, 64)
    known[0] = SHIFT  # frame 1's pixel p is frame 0's p + (3, 0)
    assert (flows.warp(a, known) - b)[..., :, :-SHIFT].abs().max() < 1e-5
    flow = flows.dis_flow(frames[1], frames[0])  # estimated
    assert flow[0, 6:-6, 6:-9].mean().item() == pytest.approx(SHIFT, abs=0.2)
    assert (flows.warp(a, flow) - b)[..., 6:-6, 6:-9].abs().mean() < 0.01
    weight = flows.reliability(flow, flows.dis_flow(frames[0], frames[1]))
    assert weight[0, :, -SHIFT:].sum() == 0  # what enters at the right border has no earlier frame
    assert weight[0, 6:-6, 6:-9].mean() > 0.9


def test_the_reliability_weight_is_zero_where_a_moving_square_uncovers_the_background():
    h, w, d = 32, 48, 6  # a square at x 10..20 in frame t-1 moves right by d
    backward = torch.zeros(2, h, w)  # t -> t-1
    forward = torch.zeros(2, h, w)  # t-1 -> t
    backward[0, 10:20, 10 + d:20 + d] = -d
    forward[0, 10:20, 10:20] = d
    c = flows.reliability(backward, forward)[0]
    assert c[10:20, 10:10 + d].sum() == 0  # uncovered in frame t: was under the square in t-1
    assert c[12:18, 12 + d:18 + d].min() == 1  # the square itself, inside
    assert c[10:20, 20 + d - 1].sum() == 0 or c[10:20, 10 + d].sum() == 0  # a motion boundary
    assert c[25:, :].min() == 1 and c[:5, :].min() == 1  # static background far from it


def test_long_term_weights_count_each_pixel_against_its_nearest_reliable_frame():
    c = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]).view(3, 1, 1, 3)  # J=3, distances 1,2,4
    assert flows.long_term(c).view(3, 3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


# ----------------------------------------------------------------------------- the temporal loss term

def _frame_module(temporal_weight=10.0):
    from nst.runner.job import Job, prepare
    from nst.runner.loop import build_module
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=32", "scales.min=0",
                             "trainer.max_steps=2", "model.weights=random", "logger.mode=disabled"])
    return build_module([prepare(Job(cfg))], temporal_weight=temporal_weight)


def test_the_temporal_loss_is_a_buffer_term_that_moves_with_the_module_to_another_device():
    module = _frame_module(10.0)
    module.enter_scale(0)
    _, _, h, w = module.target.shape
    warped = torch.rand(1, 2, 3, h, w)
    weights = (torch.rand(1, 2, 1, h, w) > 0.5).float()
    module.objective.set_temporal(warped, weights)
    _, parts = module.losses(module.target)
    expected = 10.0 * (weights * (module.target[:, None] - warped).square()).sum() / (3 * h * w)
    assert parts["temporal_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    total = parts["content_loss"] + parts["style_loss"] + parts["temporal_loss"]
    assert parts["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    module.to("meta")
    loss, parts = module.losses(module.target)
    assert {p.device.type for p in parts.values()} == {"meta"} and "temporal_loss" in parts
    assert module.final_parts().device.type == "meta"


def test_an_image_run_has_no_temporal_part_and_a_first_frame_a_zero_one():
    assert "temporal_loss" not in _frame_module(0.0).objective.settings.part_names
    module = _frame_module(10.0)
    module.enter_scale(0)
    _, parts = module.losses(module.target)
    assert parts["temporal_loss"].item() == 0
