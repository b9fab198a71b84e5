"""On a CUDA GPU: a quiet run, no host syncs in the steady training loop, and a batch equal to single runs.

Skipped without CUDA (`make test-gpu` runs them on a GPU machine, with the rest of the suite)."""

from __future__ import annotations

import json
import warnings

import lightning as L
import pytest
import torch

from helpers import CONTENT, STYLE, STYLE2
from helpers.train import tiny, train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make test-gpu)")]


def test_a_run_on_the_gpu_is_quiet_and_writes_its_outputs(tmp_path):
    out = tmp_path / "run"
    proc = train(tiny(out, "trainer.accelerator=gpu", "trainer.precision=auto", size=96, steps=20))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr  # no Lightning device lines, no Tensor Core hints
    metrics = json.loads((out / "metrics.json").read_text())
    from nst.runner.hardware import gpu_has_native_bf16
    assert metrics["precision"] == ("bf16-mixed" if gpu_has_native_bf16() else "32-true")  # V100, T4: float32
    assert metrics["loss"] < metrics["initial_loss"]
    assert metrics["peak_memory_mb"] > 0  # read on the device, before Lightning's teardown


class SyncWatch(L.Callback):
    """Turns on CUDA's sync debug mode for steps 2 .. N-1 (after the scale's first step, which reads the images
    and computes the targets) and counts what it reports, Telemetry's transfers included."""

    def __init__(self):
        self.syncs = 0
        self.steps = 0
        self.caught = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if 2 <= trainer.global_step < trainer.max_steps - 1:
            self.caught = warnings.catch_warnings(record=True)
            self.records = self.caught.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.caught is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.caught.__exit__(None, None, None)
            self.syncs += sum("synchroniz" in str(w.message) for w in self.records)
            self.steps += 1
            self.caught = None


def test_training_steps_never_wait_for_the_gpu():
    from nst.config import load_config
    from nst.runner.loop import fit, loop_for
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=128", "scales.min=0",
                             "trainer.max_steps=40", "model.weights=random", "logger.mode=offline",
                             "trainer.enable_progress_bar=false", "trainer.accelerator=gpu"])
    watch = SyncWatch()
    module, trainer = loop_for(cfg, [watch])
    fit(trainer, module)
    assert watch.steps == len(range(2, 40 - 1)) and watch.syncs == 0  # steps 2 .. 38 were watched


def test_a_batch_on_the_gpu_equals_its_pairs_alone(tmp_path):
    """Few steps, as on the CPU (test_run.py, test_a_batch_makes_the_pictures_its_members_make_alone): L-BFGS grows
    rounding differences along a run."""
    from nst.config import load_config
    from nst.runner.interrupt import SignalGuard
    from nst.runner.job import Job, prepare
    from nst.runner.run import fit_batch

    def job(style, name):
        return prepare(Job(load_config(None, [f"data.content={CONTENT}", f"data.style={style}", "data.size=128",
                                              "trainer.max_steps=6", "scales.min=0",
                                              "model.weights=caffe", "logger.mode=disabled",
                                              "trainer.enable_progress_bar=false", "trainer.accelerator=gpu",
                                              f"output.dir={tmp_path / name}"])))

    together = [job(STYLE, "a"), job(STYLE2, "b")]
    fit_batch(together, SignalGuard())
    for j, style in zip(together, (STYLE, STYLE2)):
        alone = job(style, f"alone-{j.dir[-1]}")
        fit_batch([alone], SignalGuard())
        assert j.result.metrics["steps"] == alone.result.metrics["steps"] == 6
        assert j.result.metrics["loss"] == pytest.approx(alone.result.metrics["loss"], rel=0.02)
