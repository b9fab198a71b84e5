"""The tiling.* keys: their errors, `auto` (tiles exactly the scales the memory estimate says do not fit whole), and
a module that tiles: same loss and gradient, and what metrics.json records."""

from __future__ import annotations

import pytest
import torch

from helpers import CONTENT, STYLE
from nst.config import load_config
from nst.errors import ConfigError
from nst.runner import memory, tiles
from nst.runner.job import Job, prepare
from nst.runner.loop import build_module
from nst.runner.tiles import check_memory

SHALLOW = ["model.content_layers=[conv2_1]", "model.style_layers=[conv1_1,conv2_1,conv3_1]"]


def config(*extra):
    return load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "model.weights=random",
                              "logger.mode=disabled", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
                              "trainer.precision=32", *extra])


@pytest.mark.parametrize("extra, message", [
    (["tiling.enabled=maybe"], "tiling.enabled: expected auto, true or false"),
    (["tiling.block=100"], "multiples of 16 px"),
    (["tiling.margin=48"], "tiling.margin: 48 px is less than the 80 px conv5_1 sees"),
    (["tiling.margin=big"], "tiling.margin: expected auto or a number"),
])
def test_bad_tiling_keys_are_one_line_errors(extra, message):
    with pytest.raises(ConfigError, match=message) as e:
        config(*extra)
    assert "\n" not in str(e.value)


def test_a_short_margin_is_allowed_for_the_approximation():
    assert config("tiling.margin=48", "tiling.exact=false").tiling.margin == 48
    assert config(*SHALLOW, "tiling.block=36").tiling.block == 36  # conv3_1: multiples of 4


def test_auto_tiles_exactly_the_scales_that_do_not_fit(monkeypatch):
    cfg = config("data.size=512", "scales.min=128", "tiling.block=64")
    sizes = [(96, 128), (192, 256), (384, 512)]
    needs = [tiles.needed_bytes(cfg, 1, h, w) for h, w in sizes]
    assert needs == sorted(needs)
    for free, tiled in ((needs[2] + 1, []), (needs[2] - 1, [2]), (needs[1] - 1, [1, 2]), (needs[0] - 1, [0, 1, 2])):
        monkeypatch.setattr(memory, "device_memory_bytes", lambda *a, free=free: (free, "faked"))
        tiling = tiles.choose(cfg, sizes)
        got = [i for i, (h, w) in enumerate(sizes) if tiling is not None and tiling.blocks(h, w)]
        assert got == tiled, free
        assert tiling is None or (tiling.margin, tiling.block) == (80, 64)


def test_the_memory_check_refuses_only_what_does_not_fit_even_tiled(monkeypatch):
    cfg = config("data.size=1024", "scales.min=0", "tiling.block=128")
    job = prepare(Job(cfg))
    h, w = job.sizes()[-1]
    whole = tiles.needed_bytes(cfg, 1, h, w)
    tiling = tiles.choose(config("data.size=1024", "scales.min=0", "tiling.block=128", "tiling.enabled=true"),
                          [(h, w)])
    tiled = tiles.needed_bytes(cfg, 1, h, w, tiling)
    assert tiled < whole / 2
    monkeypatch.setattr(memory, "device_memory_bytes", lambda *a: ((tiled + whole) // 2, "faked"))
    check_memory(cfg, [job])  # fits tiled: no error
    cfg.tiling.enabled = False
    with pytest.raises(ConfigError, match="or set tiling.enabled=true"):
        check_memory(cfg, [job])
    cfg.tiling.enabled = "auto"
    monkeypatch.setattr(memory, "device_memory_bytes", lambda *a: (tiled - 1, "faked"))
    with pytest.raises(ConfigError, match="even tiled"):
        check_memory(cfg, [job])


def test_a_tiled_module_has_the_same_loss_and_gradient():
    results = []
    for enabled in ("false", "true"):
        cfg = config(*SHALLOW, "data.size=48", "scales.min=0", "tiling.block=32", f"tiling.enabled={enabled}")
        module = build_module([prepare(Job(cfg))])
        module.compute_targets(0)
        x = module.target.detach().clone().requires_grad_(True)
        loss, _ = module.losses(x)
        loss.sum().backward()
        results.append((loss.detach(), x.grad))
    assert (module.tiling is not None) and len(module.tiling.blocks(*module.size_hw(0))) == 4
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-5)
    assert (results[0][1] - results[1][1]).norm() < 1e-4 * results[0][1].norm()


def test_the_seam_ratio_sees_seams():
    import numpy as np
    from PIL import Image
    from nst.bench.tiling import seam_ratio
    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :], (8, 1))  # the same |dx| everywhere
    assert seam_ratio(Image.fromarray(ramp), 64) == pytest.approx(1.0)
    seams = ramp.copy()
    seams[:, 64::64] = 0  # a dark column at each block boundary
    assert seam_ratio(Image.fromarray(seams), 64) > 10


@pytest.mark.parametrize("display", ["lines", "bar"])
def test_the_progress_display_says_the_blocks_of_a_tiled_scale(tmp_path, monkeypatch, capsys, display):
    """48x64 in blocks of 32: the coarse scale (24x32) is whole and says nothing; the last scale says 4 blocks."""
    from nst.runner import loop
    from nst.runner import run as runner
    from nst.runner.sinks import ProgressBar
    if display == "bar":
        monkeypatch.setattr(loop, "progress_sink", lambda *a, **k: ProgressBar())  # as on a terminal
    cfg = config(*SHALLOW, "data.size=64", "scales.min=32", "scales.steps=2", "trainer.max_steps=5",
                 "tiling.block=32", "tiling.enabled=true", "trainer.enable_progress_bar=true",
                 f"output.dir={tmp_path}")
    result = runner.run(cfg)
    assert result.metrics["tiling"]["blocks_per_evaluation"] == [1, 4]
    out = capsys.readouterr().out
    if display == "lines":
        lines = [line for line in out.splitlines() if line.startswith("step ")]
        assert [line.endswith("  4 blocks") for line in lines] == [False, False, True, True, True], lines
    else:  # what the bar shows between refreshes depends on tqdm's clock; its last state (the final loss) does not
        assert out.rstrip().rsplit("\r", 1)[-1].endswith(f"blocks=4, loss={result.metrics['loss']:.4g}]"), out
        assert "blocks=1" not in out, out


def test_the_print_picture_holds_a_crop_at_100_percent_around_a_block_corner():
    from PIL import Image
    from nst.print_showcase import CROP, GAP, TICK, VIEW, compose, crop_box
    final = Image.effect_noise((2048, 1536), 64).convert("RGB")
    x0, y0, x1, y1 = crop_box(2048, 1536, 512)
    assert (x1 - x0, y1 - y0) == (CROP, CROP) and (x0 + CROP // 2) % 512 == 0 and (y0 + CROP // 2) % 512 == 0
    sheet = compose(final, 512)
    assert sheet.height == VIEW + TICK
    left = round(2048 * VIEW / 1536) + GAP
    assert sheet.crop((left, TICK, left + CROP, TICK + CROP)).tobytes() == final.crop((x0, y0, x1, y1)).tobytes()


def test_the_print_picture_names_a_missing_or_untiled_run_in_one_line(tmp_path, capsys):
    from nst.print_showcase import main
    assert main(["--compose-only", f"output.dir={tmp_path}"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/metrics.json: no finished run there (make print runs one)\n"
    (tmp_path / "metrics.json").write_text('{"loss": 1.0}')
    assert main(["--compose-only", f"output.dir={tmp_path}"]) == 2
    assert "the run was not tiled" in capsys.readouterr().err
