"""End to end through train.py and the Python API, as a user runs them."""

import json
import os

import pytest
import yaml
from PIL import Image

from helpers import CONTENT, ROOT, STYLE
from helpers.train import assert_one_line_error, cli, tiny, train
from helpers.wandb_records import offline_runs

METRIC_KEYS = {"loss", "content_loss", "style_loss", "tv_loss", "steps", "evaluations", "seconds"}


def test_train_py_writes_every_output_and_logs_to_wandb_offline(tmp_path):
    out = tmp_path / "run"
    proc = train(tiny(out, "logger.mode=offline", "logger.image_every=2", "loss.tv_weight=1", size=64, steps=5),
                 env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote" in proc.stdout and "final.png" in proc.stdout

    final = Image.open(out / "final.png")
    with Image.open(CONTENT) as c:
        w, h = c.size
    assert max(final.size) == 64 and final.size == (64, round(h * 64 / w))  # content's aspect ratio

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["size"] == 64 and cfg["model"]["weights"] == "random" and cfg["trainer"]["max_steps"] == 5

    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["steps"] == 5 and metrics["evaluations"] >= 5
    assert metrics["loss"] == pytest.approx(metrics["content_loss"] + metrics["style_loss"] + metrics["tv_loss"],
                                            rel=1e-4)
    assert metrics["loss"] < metrics["initial_loss"]

    [run] = offline_runs(str(out))
    logged = {"loss", "content_loss", "style_loss", "tv_loss", "style/conv1_1", "style/conv5_1"}
    assert logged <= run.history_keys, run.history_keys
    assert {"data", "model", "loss", "optim", "trainer"} <= run.config_keys
    assert len(run.images) >= 3  # grids at steps 2 and 4, and at the end
    for path in run.images:
        grid = Image.open(path)
        assert grid.mode == "RGB" and grid.getextrema() != ((0, 0), (0, 0), (0, 0))  # not an all-black image
    assert any(name.startswith("final-") for name in run.artifacts)


def test_showcase_config_with_overrides_through_make_style_arguments(tmp_path):
    out = tmp_path / "starry"
    proc = train(["--config", "configs/starry.yaml", "data.size=48", "trainer.max_steps=30",
                     "model.weights=random", "logger.mode=disabled", f"output.dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "final.png").exists() and not (out / "wandb").exists()
    # stdout is a pipe here, as in a log file: progress comes as ten plain lines, not a redrawn bar.
    lines = proc.stdout.splitlines()
    assert "\r" not in proc.stdout
    assert [line.split()[1] for line in lines if line.startswith("step ")] == [f"{n}/30" for n in range(3, 31, 3)]
    assert lines[-1].startswith("wrote ") and len(lines) == 11, proc.stdout
    assert proc.stderr == "", proc.stderr  # nothing else: no Lightning or W&B chatter


def test_config_typo_is_one_line_exit_2_and_no_output(tmp_path, capsys):
    out = tmp_path / "typo"
    code, err = cli(capsys, tiny(out, "loss.styel_weight=3"))
    assert_one_line_error(code, err, "loss.styel_weight", "style_weight")
    assert not out.exists()


def test_real_caffe_weights_cut_the_loss_at_least_tenfold(tmp_path, capsys):
    """The real weights end to end, through the command line's own function (in this process)."""
    out = tmp_path / "real"
    # From noise, both content and style losses start high: the fall measures the whole objective.
    code, err = cli(capsys, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=96",
                             "trainer.max_steps=40", "init=noise", "model.weights=caffe", "logger.mode=disabled",
                             "trainer.enable_progress_bar=false", f"output.dir={out}"])
    assert code == 0, err[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["loss"] * 10 <= m["initial_loss"], m
    assert m["style_loss"] < m["initial_loss"] / 10
    assert os.path.getsize(out / "final.png") > 5000


def test_python_api_returns_the_stylized_image(tmp_path):
    from nst import stylize
    image = stylize(CONTENT, STYLE, data__size=48, trainer__max_steps=3, model__weights="random",
                    trainer__enable_progress_bar=False, output__dir=str(tmp_path / "api"))
    assert isinstance(image, Image.Image) and max(image.size) == 48
    assert (tmp_path / "api" / "final.png").exists()


def test_overrides_also_come_as_options_as_a_wandb_agent_passes_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "agent"
    code, err = cli(capsys, ["--config", "configs/starry.yaml", "--data.size=48", "--trainer.max_steps", "3",
                             "--model.weights=random", "--logger.mode", "disabled", f"--output.dir={out}",
                             "--trainer.enable_progress_bar=false"])
    assert code == 0, err[-3000:]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["size"] == 48 and cfg["trainer"]["max_steps"] == 3 and cfg["logger"]["mode"] == "disabled"
    with pytest.raises(SystemExit) as stopped:  # argparse's usage error
        cli(capsys, ["--config", "configs/starry.yaml", "--data.size"])
    assert stopped.value.code == 2 and "--data.size needs a value" in capsys.readouterr().err
