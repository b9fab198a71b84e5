"""Optimizing pictures (nst.runner.run): a loss or an update that is not finite, and pictures optimized together
as one batch (fit_batch, the sweep's sweep.batch), each with its own result, outputs and failure."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from helpers import CONTENT, STYLE, STYLE2
from helpers.train import assert_one_line_error, cli, tiny, train
from nst.config import load_config
from nst.runner.interrupt import SignalGuard
from nst.runner.job import Job, prepare
from nst.runner.run import fit_batch


def job(out, style, *extra):
    return prepare(Job(load_config(None, [f"data.content={CONTENT}", f"data.style={style}", "data.size=48",
                                          "trainer.max_steps=12", "scales.min=0", "model.weights=random",
                                          "logger.mode=disabled", "trainer.enable_progress_bar=false",
                                          f"output.dir={out}", *extra])))


def test_a_picture_whose_loss_turns_infinite_fails_alone(tmp_path, monkeypatch):
    from nst.model.module import StyleTransferModule
    losses = StyleTransferModule.losses

    def poisoned(self, image):  # from step 3 on, the second picture's loss is infinite
        total, parts = losses(self, image)
        if self.global_step >= 3:
            scale = torch.tensor([1.0, float("inf")], device=total.device)
            total = total * scale
            parts = {**parts, "loss": parts["loss"] * scale}
        return total, parts

    monkeypatch.setattr(StyleTransferModule, "losses", poisoned)
    jobs = [job(tmp_path / "good", STYLE), job(tmp_path / "bad", STYLE2)]
    fit_batch(jobs, SignalGuard())
    good, bad = jobs
    assert not good.error and good.result.metrics["steps"] == 12 and good.result.metrics["batch"] == 2
    assert sorted(os.listdir(tmp_path / "good")) == ["config.yaml", "final.png", "last.ckpt", "metrics.json"]
    assert bad.result is None
    assert bad.error.startswith("loss became inf at step 3") and "after 3 steps" in bad.error
    assert sorted(os.listdir(tmp_path / "bad")) == ["last_good.png"]
    with Image.open(tmp_path / "bad" / "last_good.png") as im:
        assert im.size == (48, 36)


def test_every_picture_of_a_batch_gets_its_own_checkpoint_that_resumes_alone(tmp_path):
    jobs = [job(tmp_path / "a", STYLE, "optim.name=adam", "optim.lr=0.02"),
            job(tmp_path / "b", STYLE2, "optim.name=adam", "optim.lr=0.02")]
    fit_batch(jobs, SignalGuard())
    for j in jobs:
        saved = torch.load(os.path.join(j.dir, "last.ckpt"), map_location="cpu", weights_only=True)
        assert tuple(saved["state_dict"]["target"].shape) == (1, 3, 36, 48)
        [adam] = saved["optimizer_states"]
        assert tuple(adam["state"][0]["exp_avg"].shape) == (1, 3, 36, 48)
        assert saved["nst"]["step"] == 12 and saved["nst"]["evaluations"] == 12
    # picture b alone, from its own file: 12 more steps
    more = job(tmp_path / "b", STYLE2, "optim.name=adam", "optim.lr=0.02", "resume=true", "trainer.max_steps=24")
    fit_batch([more], SignalGuard())
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["steps"] == 24 and metrics["evaluations"] == 24 and metrics["batch"] == 1


@pytest.mark.parametrize("optim", ["lbfgs", "adam"])
def test_a_batch_makes_the_pictures_its_members_make_alone(tmp_path, optim):
    """The same steps and evaluations, and final losses within 2%. Short runs: L-BFGS on this objective carries
    any rounding difference along and grows it (a change of 1e-6 in the initial image moves the loss of a
    30-step run by about 1%), and a batched convolution rounds differently from a single one."""
    extra = ["trainer.precision=32", f"optim.name={optim}", "trainer.max_steps=5" if optim == "lbfgs" else
             "optim.lr=0.02"]
    together = [job(tmp_path / "a", STYLE, *extra), job(tmp_path / "b", STYLE2, *extra)]
    fit_batch(together, SignalGuard())
    for j, style in zip(together, (STYLE, STYLE2)):
        alone = job(tmp_path / f"alone-{os.path.basename(j.dir)}", style, *extra)
        fit_batch([alone], SignalGuard())
        a, b = j.result.metrics, alone.result.metrics
        assert a["steps"] == b["steps"] and a["evaluations"] == b["evaluations"]
        assert a["loss"] == pytest.approx(b["loss"], rel=0.02)


# ----------------------------------------------------------------------------- non-finite losses

def test_inf_loss_stops_with_one_line_and_keeps_the_last_good_image(tmp_path):
    out = tmp_path / "run"
    proc = train(tiny(out, "loss.style_weight=1e40"))  # finite in the config, inf in float32 (0.2 of it per layer too)
    assert_one_line_error(proc.returncode, proc.stderr, "loss became inf at step 0", f"{out}/last_good.png")
    assert sorted(os.listdir(out)) == ["last_good.png"]
    with Image.open(CONTENT) as c:  # after 0 steps the last good image is the initial one: the content
        expected = c.convert("RGB").resize((48, 36), Image.Resampling.LANCZOS)
    assert list(Image.open(out / "last_good.png").getdata()) == list(expected.getdata())


def test_overflowing_update_stops_with_one_line(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, "optim.name=adam", "optim.lr=1e39"))
    assert_one_line_error(code, err, "overflowed float32 at step 0", "optim.lr", "last_good.png")
    assert (out / "last_good.png").exists() and not (out / "final.png").exists()


def test_a_tolerance_stops_the_run_once_the_loss_stops_falling_and_says_so(tmp_path):
    """trainer.tolerance: at the last scale, a loss that fell by less than that fraction over `patience` steps
    ends the run (judged as the numbers reach the host); metrics.json says why it stopped."""
    flat = job(tmp_path / "flat", STYLE, "trainer.max_steps=60", "trainer.tolerance=0.5", "trainer.patience=3")
    fit_batch([flat], SignalGuard())
    m = flat.result.metrics
    assert m["stopped"] == "tolerance" and 3 < m["steps"] < 60
    full = job(tmp_path / "full", STYLE, "trainer.max_steps=20")
    fit_batch([full], SignalGuard())
    assert full.result.metrics["stopped"] == "max_steps" and full.result.metrics["steps"] == 20
