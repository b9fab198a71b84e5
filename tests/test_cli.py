"""train.py and nst.cli.main: a config or output mistake is one line naming the key, exit status 2, and nothing
written."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.bad_images import make_bad
from helpers.train import assert_one_line_error, cli, popen, tiny, train


def make_config_case(tmp_path, case: str, monkeypatch) -> tuple[list[str], list[str]]:
    """Overrides that make one config mistake, and the words the error must contain."""
    if case == "unknown_key":
        return ["loss.styel_weight=3"], ["loss.styel_weight"]
    if case == "wrong_type":
        return ["data.size=big"], ["data.size", "big"]
    if case == "unknown_layer":
        return ["model.style_layers=[conv1_1,conv9_9]"], ["model.style_layers", "conv9_9"]
    if case == "unknown_weights_name":
        return ["model.weights=vgg16"], ["model.weights", "vgg16"]
    if case == "corrupt_weights_file":
        path = tmp_path / "vgg.pth"
        path.write_bytes(os.urandom(4096))
        return [f"model.weights={path}"], ["model.weights", str(path), "not a readable weights file"]
    if case == "wrong_shape_weights":
        path = tmp_path / "vgg.pth"
        torch.save({f"features.{i}.weight": torch.zeros(8, 3, 3, 3) for i in (0,)} |
                   {"features.0.bias": torch.zeros(8)}, path)
        return [f"model.weights={path}"], ["model.weights", "wrong shape for conv1_1", "(64, 3, 3, 3)"]
    if case == "torchvision_unavailable":
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
        monkeypatch.setenv("NST_TORCHVISION_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")  # nothing listens
        return ["model.weights=torchvision"], ["model.weights=torchvision", "could not be downloaded"]
    if case == "size_zero":
        return ["data.size=0"], ["data.size", "positive"]
    if case == "size_negative":
        return ["data.size=-5"], ["data.size", "positive"]
    if case == "negative_weight":
        return ["loss.style_weight=-1"], ["loss.style_weight", ">= 0"]
    if case == "nan_weight":
        return ["loss.content_weight=nan"], ["loss.content_weight", "finite"]
    if case == "output_dir_not_writable":
        blocker = tmp_path / "a-file"
        blocker.write_text("in the way")
        return [f"output.dir={blocker}/run"], ["output.dir", "cannot write"]
    raise ValueError(case)


CONFIG_CASES = ["unknown_key", "wrong_type", "unknown_layer", "unknown_weights_name", "corrupt_weights_file",
                "wrong_shape_weights", "torchvision_unavailable", "size_zero", "size_negative", "negative_weight",
                "nan_weight", "output_dir_not_writable"]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_mistake_is_one_line_naming_the_key_exit_2_and_no_output(case, tmp_path, capsys, monkeypatch,
                                                                        one_thread):
    overrides, words = make_config_case(tmp_path, case, monkeypatch)
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out) + overrides)
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_unwritable_output_dir_when_permissions_apply(tmp_path, capsys, one_thread):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere; the 'a file in the way' case covers this as root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = cli(capsys, tiny(locked / "run"))
    assert_one_line_error(code, err, "output.dir", "Permission denied")


def test_train_py_bad_input_exit_status_and_stderr(tmp_path):
    """The process itself: status 2, stderr exactly one `error:` line, no output folder."""
    bad, words = make_bad(tmp_path, "truncated_jpeg")
    shapes = tmp_path / "shapes.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 5, 5), "conv1_1.bias": torch.zeros(64)}, shapes)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = {  # name: (overrides, words in the error, nothing else on stderr)
        "truncated_jpeg": ([f"data.content={bad}"], [bad, *words], True),
        "wrong_shape_weights": ([f"model.weights={shapes}"], ["wrong shape for conv1_1"], True),
        # found after the Trainer is built, so Lightning's own start-up lines may come before it
        "unwritable": ([f"output.dir={blocker}/run"], ["output.dir", "cannot write"], False),
    }
    procs = {k: popen(tiny(tmp_path / f"out-{k}", *extra)) for k, (extra, _, _) in cases.items()}  # in parallel
    for kind, p in procs.items():
        out, err = p.communicate(timeout=240)
        _, words, alone = cases[kind]
        assert_one_line_error(p.returncode, err, *words)
        assert not alone or len(err.strip().splitlines()) == 1, (kind, err[-2000:])
        assert out == "" and not (tmp_path / f"out-{kind}").exists()


def test_full_disk_is_one_line_naming_output_dir_and_no_partial_file(tmp_path):
    # RLIMIT_FSIZE makes every write past 3000 bytes fail (EFBIG; Python ignores SIGXFSZ), like a full disk.
    out = tmp_path / "run"
    proc = train(tiny(out, steps=2), limits={"RLIMIT_FSIZE": 3000})
    assert_one_line_error(proc.returncode, proc.stderr, "output.dir: cannot write", f"{out}/final.png")
    assert os.listdir(out) == []  # no final.png, no metrics, no temporary file


@pytest.mark.parametrize("text, words", [("just a string\n", "holds a bare string ('just a string')"),
                                         ("- data.size: 64\n", "holds a list")])
def test_a_config_file_that_is_not_a_mapping_says_so(text, words, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    code, err = cli(capsys, ["--config", str(config), f"output.dir={tmp_path / 'out'}"])
    assert_one_line_error(code, err, str(config), "a config file must be a mapping of keys", words)
