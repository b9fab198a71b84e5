"""Checkpoints (nst.runner.checkpoint): what one holds, what can resume it, atomic writes, and files that can
never run code when read."""

from __future__ import annotations

import ast
import errno
import glob
import json
import os

import pytest
import torch

from PIL import Image

from helpers import CONTENT, ROOT
from helpers.disk import fill, small_disk
from helpers.train import ADAM, assert_one_line_error, cli, evil_file, leftovers, tiny
from nst import files
from nst.errors import OutputError
from nst.runner import checkpoint as ckpt_mod


def test_checkpoint_holds_target_and_optimizer_state_only(reference):
    path = reference / "last.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    target = saved["state_dict"]["target"]
    assert list(saved["state_dict"]) == ["target"] and tuple(target.shape) == (1, 3, 36, 48)
    [adam] = saved["optimizer_states"]
    assert set(adam["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    tensors = [t for t in _tensors(saved)]
    assert sum(t.numel() for t in tensors) <= 3 * target.numel() + 16  # target + two moments (+ Adam's step)
    size = os.path.getsize(path)
    assert size < 3 * target.numel() * 4 + 32_000, size  # ~62 KB of floats and a little structure: not 80 MB


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def test_lbfgs_checkpoint_drops_the_history_and_a_finished_run_can_be_extended(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, steps=4))
    assert code == 0, err[-2000:]
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    [lbfgs] = saved["optimizer_states"]
    # no history (no step count either): the resumed run's first step is a first step again, with its line search
    assert lbfgs["state"] == {}
    assert os.path.getsize(out / "last.ckpt") < saved["state_dict"]["target"].numel() * 4 + 32_000

    code, err = cli(capsys, tiny(out, "resume=true", steps=4))  # already there
    assert_one_line_error(code, err, "resume:", "already at step 4", "trainer.max_steps")
    code, err = cli(capsys, ["--config", str(out / "config.yaml"), "resume=true", "trainer.max_steps=7"])
    assert code == 0, err[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 7


def test_resume_problems_are_one_line_errors_before_anything_is_written(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", f"no checkpoint at {out}/last.ckpt")
    assert not out.exists()

    code, err = cli(capsys, tiny(out, *ADAM, steps=25))  # a finished 25-step run at 48 px, Adam
    assert code == 0, err
    before = sorted(os.listdir(out))
    for overrides, words in [
        (["data.size=64", "scales.min=0", "trainer.max_steps=30"], ["holds a 48x36 image", "expects 64x48"]),
        (["optim.name=lbfgs", "trainer.max_steps=30"], ["optim.name=adam", "optim.name=lbfgs"]),
    ]:
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", *overrides))
        assert_one_line_error(code, err, "resume:", *words)
    (out / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    code, err = cli(capsys, tiny(out, *ADAM, "resume=true", steps=30))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint")
    assert sorted(os.listdir(out)) == before

    (out / "final.png").unlink()  # now it looks like an unfinished run: starting over says what it replaces
    code, err = cli(capsys, tiny(out, *ADAM, steps=25))
    assert code == 0, err
    assert f"{out}: replacing metrics.json, last.ckpt of an earlier run (resume=true continues" in err
    code, err = cli(capsys, tiny(out, *ADAM, steps=25))  # and a finished one
    assert code == 0 and f"{out}: replacing final.png, metrics.json, last.ckpt of an earlier run" in err, err


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old checkpoint")

    def failing_fsync(fd):  # the whole file written, then the disk reports that it could not keep it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    batch = {"state_dict": {"target": torch.zeros(1, 3, 2, 2)}, "optimizer_states": [],
             "nst": {"evaluations": [1], "initial_loss": [1.0]}}
    with pytest.raises(OutputError, match="No space left on device"):
        ckpt_mod.PairCheckpointIO([str(tmp_path)]).save_checkpoint(batch, str(path))
    assert path.read_bytes() == b"old checkpoint" and not leftovers(tmp_path)


def test_weights_and_checkpoints_never_unpickle_code(tmp_path, capsys, one_thread):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    evil_file(weights, marker)
    code, err = cli(capsys, tiny(tmp_path / "out1", f"model.weights={weights}"))
    assert_one_line_error(code, err, "model.weights", "not a readable weights file")

    out = tmp_path / "out2"
    out.mkdir()
    evil_file(out / "last.ckpt", marker)
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint")
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """Static guard for future code: torch.load, load_state_dict_from_url and Trainer.fit(ckpt_path=...)."""
    src = os.path.join(ROOT, "src", "nst")
    checked = 0
    for path in glob.glob(os.path.join(src, "**", "*.py"), recursive=True):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            kw = {k.arg: k.value for k in node.keywords}
            if name in ("load", "load_state_dict_from_url") and ast.unparse(node.func) in (
                    "torch.load", "load_state_dict_from_url") or (name == "fit" and "ckpt_path" in kw):
                checked += 1
                value = kw.get("weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, \
                    f"{os.path.basename(path)}:{node.lineno}: {ast.unparse(node)[:80]} needs weights_only=True"
    assert checked >= 4


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_picture_and_the_old_checkpoint(
        tmp_path, capsys, one_thread):
    """A checkpoint (66 KB here) that does not fit: exit 2 naming the file and the disk's error, the image kept,
    the previous last.ckpt whole and still resumable, no temporary file."""
    with small_disk(tmp_path / "disk") as disk:
        out = os.path.join(disk, "run")
        code, err = cli(capsys, tiny(out, *ADAM, steps=3))  # room for everything: last.ckpt at step 3
        assert code == 0, err[-2000:]
        assert oct(os.stat(os.path.join(out, "last.ckpt")).st_mode & 0o777) == oct(0o666 & ~_umask())
        fill(disk, leave=40_000)  # room for the pictures, not for another checkpoint beside the old one

        # a periodic checkpoint fails: the run stops at the next step boundary and keeps its image
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", "output.checkpoint_every=1", steps=10))
        assert_one_line_error(code, err, f"output.dir: cannot write {out}/last.ckpt (No space left on device)",
                              f"the image after 5 steps is in {out}/interrupted.png",
                              f"{out}/last.ckpt is from an earlier step")
        assert os.path.isfile(os.path.join(out, "interrupted.png")) and not leftovers(out)
        assert ckpt_mod.load(os.path.join(out, "last.ckpt"))["nst"]["step"] == 3

        # the final checkpoint fails: the pictures and metrics are written, and said to be
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", "output.checkpoint_every=0", steps=6))
        assert_one_line_error(code, err, f"output.dir: cannot write {out}/last.ckpt (No space left on device)",
                              "final.png, config.yaml and metrics.json were written")
        assert json.loads(open(os.path.join(out, "metrics.json")).read())["steps"] == 6 and not leftovers(out)
        assert ckpt_mod.load(os.path.join(out, "last.ckpt"))["nst"]["step"] == 3


def test_resume_with_other_inputs_is_refused_naming_them_unless_forced(tmp_path, capsys, one_thread):
    """The same-sized mirror image as content, or another style weight, would optimize a blend of two runs."""
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, *ADAM, steps=3))
    assert code == 0, err[-2000:]
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert set(saved["nst"]["inputs"]) == {"content", "styles", "settings"}
    assert oct(os.stat(out / "last.ckpt").st_mode & 0o777) == oct(0o666 & ~_umask())  # like the other outputs
    mirror = tmp_path / "mirror.png"
    with Image.open(CONTENT) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirror)
    before = sorted(os.listdir(out))
    for overrides, words in [
        ([f"data.content={mirror}"], ["data.content is another image"]),
        (["loss.style_weight=100", "model.pooling=avg"], ["loss.style_weight was 30.0, now 100.0",
                                                          "model.pooling was max, now avg"]),
    ]:
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", *overrides, steps=5))
        assert_one_line_error(code, err, "resume:", "was made with other inputs", "resume=force", *words)
        assert sorted(os.listdir(out)) == before
    code, err = cli(capsys, tiny(out, *ADAM, "resume=force", f"data.content={mirror}", steps=5))
    assert code == 0, err[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 5
    code, err = cli(capsys, tiny(out, *ADAM, "resume=maybe", steps=6))
    assert_one_line_error(code, err, "resume: expected true, false or force")

    del saved["nst"]["inputs"]  # a checkpoint of an older version: resumed, with a warning that it is unchecked
    torch.save(saved, out / "last.ckpt")
    with pytest.warns(UserWarning, match="records no inputs"):
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", f"data.content={mirror}", steps=5))
    assert code == 0, err[-2000:]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
