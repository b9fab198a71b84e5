"""What a newcomer asks first: `nst --help` (every key with its default and meaning, from the schema's own comments),
the example configs by name from any folder, and help that answers without importing torch or Lightning."""

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from helpers import ROOT

SRC = os.path.join(ROOT, "src")


def test_every_schema_key_has_a_meaning_from_its_comment():
    """A field added to schema.py without a comment (beside it or right above it) fails here."""
    from nst.schema import Config
    from nst.helptext import defaults, meanings
    told = meanings()
    container = OmegaConf.to_container(OmegaConf.structured(Config))
    assert set(told) == set(defaults()) and "data.size" in told and "seed" in told
    assert len(told) >= sum(len(v) if isinstance(v, dict) else 1 for v in container.values()) - len(container["sweep"]["grid"])
    missing = [k for k, v in told.items() if len(v) < 8]
    assert not missing, f"config fields without a comment saying what they mean: {missing}"
    assert told["data.size"] == "longest side of the output in pixels"  # the trailing comment
    assert told["loss.normalize"].startswith("Divide each layer's loss")  # the comment lines above the field


def test_the_comment_reader_takes_trailing_then_above_and_nothing_else():
    from nst.helptext import meanings
    source = ("from dataclasses import dataclass\n"
              "@dataclass\nclass Inner:\n"
              "    a: int = 1  # beside\n"
              "    # above, first line\n    # and second\n    b: str = 'x#y'\n"
              "    c: float = 0.5\n"
              "@dataclass\nclass Config:\n    inner: Inner = None  # a section\n    top: int = 0  # top\n")
    assert meanings(source) == {"inner.a": "beside", "inner.b": "above, first line and second", "inner.c": "",
                                "top": "top"}


def test_help_lists_every_key_with_a_meaning_and_lists_as_lists(capsys):
    from nst.cli import parse
    from nst.helptext import defaults
    with pytest.raises(SystemExit) as e:
        parse(["--help"], "nst", "d", "e")
    assert e.value.code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and "." in line.split()[0]}
    keys = [k for k in defaults() if "." in k]
    assert set(keys) <= set(lines)
    bare = [k for k in keys if len(lines[k].split()) < 3]
    assert not bare, f"keys shown without a meaning: {bare}"
    assert lines["video.long_term"].split()[1] == "[1]" and lines["logger.tags"].split()[1] == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["--list-configs"]])
def test_help_and_the_config_list_answer_without_importing_torch(argv):
    """Speed by construction, not by the clock: the help paths never import torch or Lightning."""
    code = ("import sys\nsys.argv = ['nst', *sys.argv[1:]]\nfrom nst.cli import entry\n"
            "try:\n    entry()\nexcept SystemExit as e:\n"
            "    print('HEAVY', sorted(m for m in ('torch', 'lightning', 'wandb') if m in sys.modules))\n"
            "    raise\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]


def test_example_configs_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    from nst.cli import parse
    from nst.config import load_config
    monkeypatch.chdir(tmp_path)
    cfg = load_config("starry")
    assert cfg.data.content == os.path.join(ROOT, "assets", "tubingen.jpg") and os.path.isfile(cfg.data.content)
    assert load_config("video.yaml").data.content.endswith("bigbuckbunny.mp4")
    with pytest.raises(SystemExit):
        parse(["--list-configs"], "nst", "d", "e")
    listed = capsys.readouterr().out
    names = {line.split()[0] for line in listed.splitlines()}
    assert {"starry", "large", "color", "video", "sweep", "grid"} <= names
    assert names == {f[:-5] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml")}


def test_help_texts_name_only_configs_that_exist():
    """Names in the help's `--config` text and the sweep's description are example configs that exist."""
    import re

    from nst import commandline
    from nst.paths import example_configs
    parser_help = subprocess.run([sys.executable, "-m", "nst", "--help"], cwd="/", capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": SRC}, timeout=120).stdout
    named = [n for n in re.findall(r"example config: ([\w, ]+)", " ".join(parser_help.split()))[0].split(", ") if n]
    named += re.findall(r"--config (\w+)", commandline.SWEEP_DESCRIPTION)
    assert named and set(named) <= set(example_configs()), named
