"""A tiled run ends where the whole one does with everything else a run can have: several styles with blend
weights, colour preservation, the TV term, coarse to fine, a resume from a checkpoint and a video's temporal
term (small pictures, shallow layers, 32-true; each tiled run counted to have gone block by block).

The evaluations agree to float32 rounding (tests/test_tiling.py: to 1e-10 in float64). The runs use Adam: L-BFGS
amplifies that rounding (its line search keeps or rejects a step on a comparison of two nearly equal losses: 0.5%
apart after 4 steps with histogram colours), Adam carries it along, so the final losses agree to 1e-4. The
default L-BFGS is checked tiled against whole over five steps in float64 (tests/test_tiling.py)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from PIL import Image

from helpers import CONTENT, STYLE, STYLE2
from helpers.train import cli, tiny
from nst.model import tiling as model_tiling

FINAL = 1e-4
ADAM = ["optim.name=adam", "optim.lr=0.02"]
SHALLOW = ["model.content_layers=[conv2_1]", "model.style_layers=[conv1_1,conv2_1,conv3_1]"]
# 48x64 in blocks of 24 px: 6 blocks at the last scale, 2 at the coarse one (24x32)
TILED = [*ADAM, *SHALLOW, "data.size=64", "scales.min=32", "scales.steps=2", "tiling.block=24"]


@pytest.fixture
def tiled_evaluations(monkeypatch) -> list:
    """One entry per evaluation that went block by block (model/tiling.evaluate, run for real)."""
    calls: list = []
    real = model_tiling.evaluate
    monkeypatch.setattr(model_tiling, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def both(capsys, tmp_path, *extra, steps=4) -> dict:
    """metrics.json of the same run whole and tiled."""
    metrics = {}
    for enabled in ("false", "true"):
        out = tmp_path / enabled
        code, err = cli(capsys, tiny(out, *TILED, f"tiling.enabled={enabled}", *extra, steps=steps))
        assert code == 0, err[-2000:]
        metrics[enabled] = json.loads((out / "metrics.json").read_text())
    return metrics


@pytest.mark.parametrize("extra", [
    [f"data.style=[{STYLE},{STYLE2}]", "data.style_weights=[0.7,0.3]"],
    ["color.preserve=luminance"],
    ["color.preserve=histogram"],
    ["loss.tv_weight=0.01"],
], ids=["two-styles", "luminance", "histogram", "tv"])
def test_a_tiled_run_ends_where_the_whole_one_does(tmp_path, capsys, tiled_evaluations, extra):
    metrics = both(capsys, tmp_path, *extra)
    assert tiled_evaluations and metrics["true"]["tiling"]["blocks_per_evaluation"] == [2, 6]
    assert "tiling" not in metrics["false"]
    assert metrics["true"]["initial_loss"] == pytest.approx(metrics["false"]["initial_loss"], rel=1e-5)
    for key in ("loss", "style_loss", "content_loss", "tv_loss"):
        assert metrics["true"][key] == pytest.approx(metrics["false"][key], rel=FINAL, abs=1e-9), key


def test_a_tiled_run_resumes_as_the_whole_one_does(tmp_path, capsys, tiled_evaluations):
    both(capsys, tmp_path, steps=3)
    metrics = {}
    for enabled in ("false", "true"):
        out = tmp_path / enabled
        code, err = cli(capsys, ["--config", str(out / "config.yaml"), "resume=true", "trainer.max_steps=5"])
        assert code == 0, err[-2000:]
        metrics[enabled] = json.loads((out / "metrics.json").read_text())
    assert tiled_evaluations and metrics["true"]["steps"] == metrics["false"]["steps"] == 5
    assert metrics["true"]["loss"] == pytest.approx(metrics["false"]["loss"], rel=FINAL)


def test_a_tiled_video_ends_where_the_whole_one_does(tmp_path, capsys, tiled_evaluations):
    """Frame 2's temporal term is computed on the whole frame, tiled or not."""
    from nst.video import encode
    photo = Image.open(CONTENT).convert("RGB").resize((64, 48))
    clip = str(tmp_path / "clip.mp4")
    encode.write_video(clip, [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], Fraction(10), crf=0)
    metrics = both(capsys, tmp_path, f"data.content={clip}", "video.steps_later=2")
    assert tiled_evaluations and metrics["true"]["frames"] == 2
    assert metrics["true"]["temporal_loss"] > 0
    for key in ("loss", "temporal_loss", "style_loss"):
        assert metrics["true"][key] == pytest.approx(metrics["false"][key], rel=FINAL), key
