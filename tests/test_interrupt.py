"""Ctrl-C and SIGTERM (nst.runner.interrupt): the image and a checkpoint at a step boundary, a resume that ends
where an uninterrupted run ends, and a second signal that stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from PIL import Image

from helpers.train import ADAM, ADAM_STEPS, cli, leftovers, popen, target_of, tiny, train
from nst.images import to_pil


def interrupt_after(out, sig, after_step: int, extra=()) -> subprocess.CompletedProcess:
    """Start a run that saves every step, send `sig` once step_<after_step>.png exists."""
    p = popen(tiny(out, *ADAM, "output.save_every=1", *extra, steps=ADAM_STEPS))
    marker = os.path.join(out, f"step_{after_step:05d}.png")
    while not os.path.exists(marker) and p.poll() is None:  # an event, however slow the machine
        time.sleep(0.01)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


@pytest.mark.parametrize("sig, after_step, code", [
    (signal.SIGINT, 5, 130),  # resumed run crosses into the second scale
    (signal.SIGTERM, 25, 143),  # checkpoint taken at the second scale: the target is resized on load
])
def test_signal_writes_image_and_checkpoint_and_resume_matches_uninterrupted(sig, after_step, code, tmp_path,
                                                                             reference):
    out = tmp_path / "run"
    proc = interrupt_after(out, sig, after_step)
    assert proc.returncode == code, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(sig).name} at step ")
    assert f"resume with: python train.py --config {out}/config.yaml resume=true" in last
    assert "Traceback" not in proc.stderr
    assert (out / "interrupted.png").exists() and (out / "last.ckpt").exists() and (out / "config.yaml").exists()
    assert not (out / "final.png").exists() and not (out / "metrics.json").exists()
    assert not leftovers(out)

    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    step = saved["nst"]["step"]
    assert after_step <= step < ADAM_STEPS and saved["global_step"] == step
    # interrupted.png is the checkpoint's image: what you see is what a resume continues from.
    assert list(Image.open(out / "interrupted.png").getdata()) == list(to_pil(saved["state_dict"]["target"]).getdata())

    resumed = train(["--config", str(out / "config.yaml"), "resume=true", "output.save_every=0"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "final.png").exists() and (out / "metrics.json").exists()
    seconds = json.loads((out / "metrics.json").read_text())["seconds"]
    assert seconds > saved["nst"]["seconds"] > 0  # the interrupted part counts too
    diff = (target_of(out / "last.ckpt") - target_of(reference / "last.ckpt")).abs().max().item()
    assert diff <= 1e-5, diff
    assert list(Image.open(out / "final.png").getdata()) == list(Image.open(reference / "final.png").getdata())


def test_second_signal_stops_at_once_without_a_checkpoint(tmp_path, capsys, monkeypatch, one_thread):
    from nst.model.module import StyleTransferModule
    losses = StyleTransferModule.losses

    def signalling_losses(self, image):
        if self.global_step == 2:  # in the middle of the third step: Ctrl-C, then Ctrl-C again
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))  # the handler runs between bytecodes
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
        return losses(self, image)

    monkeypatch.setattr(StyleTransferModule, "losses", signalling_losses)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, steps=10))
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGINT during step 3:")
    assert (out / "interrupted.png").exists() and not (out / "last.ckpt").exists()
    assert not (out / "final.png").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # the guard gave the signal back


def test_a_run_killed_outright_resumes_from_its_last_periodic_checkpoint(tmp_path):
    """output.checkpoint_every=10: SIGKILL (no chance to write anything) at about step 30 of 60 loses at most
    10 steps, and resume=true finishes the run."""
    out = tmp_path / "run"
    p = popen(tiny(out, "output.checkpoint_every=10", "output.save_every=1", "optim.name=adam", "optim.lr=0.02",
                   steps=60))
    marker = out / "step_00030.png"
    while not marker.exists() and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["nst"]["step"] >= 20 and (out / "config.yaml").exists() and not (out / "final.png").exists()
    resumed = train(["--config", str(out / "config.yaml"), "resume=true", "output.save_every=0"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 60
    assert not leftovers(out)


def test_sighup_is_a_stop_like_sigterm(tmp_path):
    """A closed terminal or a lost SSH session: the image and a checkpoint are kept, exit status 128 + 1."""
    out = tmp_path / "run"
    p = popen(tiny(out, "output.save_every=1", "output.checkpoint_every=0", steps=100_000))
    while not (out / "step_00002.png").exists() and p.poll() is None:
        time.sleep(0.01)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 129, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGHUP at step ") and "Traceback" not in err
    assert (out / "interrupted.png").exists() and (out / "last.ckpt").exists()

    # a resume that finishes leaves final.png alone: the interrupted image is gone
    step = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)["nst"]["step"]
    resumed = train(["--config", str(out / "config.yaml"), "resume=true", "output.save_every=0",
                     f"trainer.max_steps={step + 2}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "final.png").exists() and not (out / "interrupted.png").exists()


def test_a_signal_before_the_first_step_leaves_no_empty_output_dir(tmp_path, capsys, monkeypatch, one_thread):
    """Ctrl-C after output.dir was made but before optimization began: nothing to keep, and no empty folder."""
    from nst.runner import run as run_module
    remove_leftovers = run_module.remove_leftovers

    def signalling(folder):  # runs right after output.dir is created
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100))  # the handler runs between bytecodes
        return remove_leftovers(folder)

    monkeypatch.setattr(run_module, "remove_leftovers", signalling)
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, steps=10))
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted by SIGINT before optimization started"
    assert not out.exists()
