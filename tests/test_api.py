"""nst.stylize takes Python values, and a config file's relative paths are relative to the file."""

import os
import shutil

import pytest
import yaml

from helpers import CONTENT, STYLE
from nst import stylize
from nst.config import load_config
from nst.errors import ConfigError


def test_stylize_merges_python_values_not_their_strings(tmp_path, one_thread):
    image = stylize(CONTENT, STYLE, data__size=32, trainer__max_steps=2, model__weights="random",
                    trainer__precision="32", trainer__enable_progress_bar=False, logger__group=None,
                    logger__tags=["a", "b"], output__dir=str(tmp_path / "out"))
    assert max(image.size) == 32
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert saved["logger"]["group"] is None and saved["logger"]["tags"] == ["a", "b"]  # not "None"
    with pytest.raises(ConfigError, match="styel_weight"):
        stylize(CONTENT, STYLE, loss__styel_weight=1.0, output__dir=str(tmp_path / "bad"))


def test_relative_paths_in_a_config_file_are_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "images").mkdir(parents=True)
    shutil.copy(CONTENT, tmp_path / "cfg" / "images" / "c.jpg")
    (tmp_path / "cfg" / "run.yaml").write_text("data:\n  content: images/c.jpg\n  style: [images/c.jpg]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(str(tmp_path / "cfg" / "run.yaml"), ["output.dir=out"])
    assert cfg.data.content == str(tmp_path / "cfg" / "images" / "c.jpg") and list(cfg.data.style) == [cfg.data.content]
    assert cfg.output.dir == "out"  # outputs stay where the command runs
    # the default showcase images come with nst, whatever the working directory
    cfg = load_config(None, [])
    assert os.path.isfile(cfg.data.content) and cfg.data.content.endswith("tubingen.jpg")
    # a path that exists as given is kept as given
    monkeypatch.chdir(tmp_path / "cfg")
    assert load_config(None, ["data.content=images/c.jpg"]).data.content == "images/c.jpg"
