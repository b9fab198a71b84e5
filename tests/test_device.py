"""The GPU path, checked on the CPU: every tensor the loss needs moves with the module, nothing computes on the
module after Lightning's teardown, an out-of-memory batch is retried only after the failed attempt is freed,
memory estimates, and the trainer settings that cannot work on one run."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import weakref

import pytest
import torch
from lightning.pytorch.strategies import Strategy
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import CONTENT, ROOT, STYLE, STYLE2
from helpers.sweeps import run_share_here
from helpers.train import assert_one_line_error, cli
from nst.config import load_config
from nst.runner import memory
from nst.runner.loop import module_for


SWEEP_CONFIG = os.path.join(ROOT, "configs", "sweep.yaml")


def small_config(*extra: str):
    return load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=64", "scales.min=32",
                              "trainer.max_steps=6", "scales.steps=3", "model.weights=random", "logger.mode=disabled",
                              "trainer.enable_progress_bar=false", *extra])


# ----------------------------------------------------------------------------- device discipline

def test_every_tensor_the_loss_needs_moves_with_the_module_to_another_device():
    """On the meta device any tensor left behind on the CPU (a cached target that is not a buffer) raises."""
    module = module_for(small_config())
    module.enter_scale(0)  # targets at the first scale, computed on the CPU
    module.to("meta")
    loss, parts = module.losses(module.target)
    assert loss.device.type == "meta" and loss.shape == (1,)
    assert {p.device.type for p in parts.values()} == {"meta"}
    module.enter_scale(1)  # a scale change there: upsampled target, new targets
    assert tuple(module.target.shape[-2:]) == module.size_hw(1) and module.target.device.type == "meta"
    final = module.final_parts()  # the float32 evaluation
    assert final.device.type == "meta" and final.shape == (1, len(module.objective.settings.part_names))


def test_a_target_kept_outside_the_buffers_is_caught_by_the_meta_move():
    """The check itself: a CPU tensor hidden in a plain attribute makes the loss raise on the meta device."""
    module = module_for(small_config())
    module.enter_scale(0)
    objective = module.objective
    name = f"content_target_{objective.settings.content_layers[0]}"
    hidden = objective._buffers.pop(name)
    object.__setattr__(objective, name, hidden)  # a plain attribute: .to() leaves it where it is
    module.to("meta")
    with pytest.raises(RuntimeError, match="meta"):
        module.losses(module.target)


class ConvsAfterTeardown(TorchDispatchMode):
    """Counts convolutions run between a Strategy's teardown and the next setup."""

    def __init__(self):
        super().__init__()
        self.after = 0
        self.total = 0
        self.torn_down = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.convolution, torch.ops.aten.convolution_backward):
            self.total += 1
            self.after += self.torn_down
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def watching_teardown():
    watch = ConvsAfterTeardown()
    setup, teardown = Strategy.setup, Strategy.teardown

    def on_setup(self, trainer):
        watch.torn_down = False
        return setup(self, trainer)

    def on_teardown(self):
        result = teardown(self)
        watch.torn_down = True
        return result

    Strategy.setup, Strategy.teardown = on_setup, on_teardown
    try:
        with watch:
            yield watch
    finally:
        Strategy.setup, Strategy.teardown = setup, teardown


def test_train_py_computes_nothing_after_lightnings_teardown(tmp_path, capsys):
    with watching_teardown() as watch:
        code = cli(capsys, ["data.content=" + CONTENT, "data.style=" + STYLE, "data.size=64", "scales.min=32",
                            "trainer.max_steps=6", "scales.steps=3", "model.weights=random", "logger.mode=disabled",
                            "trainer.enable_progress_bar=false", f"output.dir={tmp_path / 'run'}"])[0]
    assert code == 0
    assert watch.total > 0 and watch.after == 0, (watch.total, watch.after)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["loss"] < metrics["initial_loss"] and metrics["steps"] == 6


def test_a_batched_sweep_computes_nothing_after_lightnings_teardown(tmp_path, capsys):
    from nst.sweep.command import main as sweep_main, parse_summary_line
    out = tmp_path / "sweep"
    with watching_teardown() as watch:
        code = sweep_main(["--config", SWEEP_CONFIG, "model.weights=random", "data.size=48", "scales.min=0",
                           "trainer.max_steps=4", "logger.mode=disabled", f"output.dir={out}", "sweep.batch=2",
                           f"sweep.contents=[{CONTENT}]", f"sweep.styles=[{STYLE},{STYLE2}]"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "in batch 1/1 of 2" in printed  # both pairs were optimized as one batch
    closing = parse_summary_line(printed)  # what make bench-gpu reads its sweep figures from
    assert closing is not None and (closing["done"], closing["failed"], closing["todo"]) == (2, 0, 0)
    assert closing["seconds"] > 0
    assert watch.total > 0 and watch.after == 0, (watch.total, watch.after)
    for name in ("tubingen__starry_night", "tubingen__the_scream"):
        assert json.loads((out / name / "metrics.json").read_text())["batch"] == 2


# ----------------------------------------------------------------------------- out of memory

def test_an_out_of_memory_batch_is_retried_in_halves_after_the_failed_attempt_is_freed(tmp_path, monkeypatch):
    """The retry must not run inside the except block, where the traceback keeps the failed attempt's tensors."""
    from nst.sweep import batch as sweep_batch

    cfg = load_config(SWEEP_CONFIG, ["model.weights=random", "data.size=48", "scales.min=0",
                                            "trainer.max_steps=2", "logger.mode=disabled", "sweep.batch=2",
                                            f"output.dir={tmp_path / 'sweep'}", f"sweep.contents=[{CONTENT}]",
                                            f"sweep.styles=[{STYLE},{STYLE2}]"])
    real_fit = sweep_batch.fit_batch
    attempts: list[int] = []
    failed_attempt: list[weakref.ref] = []
    alive_at_retry: list[bool] = []

    def fit_batch(jobs, guard, label=None):
        attempts.append(len(jobs))
        if len(jobs) == 2:
            activations = torch.ones(1000)  # what the failed attempt held, referenced by its frame
            failed_attempt.append(weakref.ref(activations))
            raise torch.OutOfMemoryError("CUDA out of memory (test)")
        gc.collect()
        alive_at_retry.append(failed_attempt[0]() is not None)
        return real_fit(jobs, guard, label)

    monkeypatch.setattr(sweep_batch, "fit_batch", fit_batch)
    results = run_share_here(cfg)
    assert attempts == [2, 1, 1]
    assert alive_at_retry == [False, False]
    assert [r.status for r in results] == ["done", "done"]


# ----------------------------------------------------------------------------- memory estimates

def test_the_memory_estimate_grows_with_the_size_the_precision_and_the_history():
    bf16 = memory.bytes_per_picture(512 * 384, "bf16-mixed", 20)
    assert memory.bytes_per_picture(1024 * 768, "bf16-mixed", 20) == pytest.approx(4 * bf16, rel=0.01)
    assert memory.bytes_per_picture(512 * 384, "32-true", 20) > 1.4 * bf16
    more_history = memory.bytes_per_picture(512 * 384, "bf16-mixed", 100) - bf16
    assert more_history == pytest.approx(memory.MARGIN * 512 * 384 * 80 * 24, rel=0.001)  # 80 more (s, y) pairs
    gib = 2**30
    alone = memory.pictures_that_fit(80 * gib, 512 * 512, "bf16-mixed", 20, most=1000)
    assert memory.pictures_that_fit(80 * gib, 512 * 512, "bf16-mixed", 20, sharing=4, most=1000) <= alone // 4 + 1
    assert memory.pictures_that_fit(1, 512 * 512, "bf16-mixed", 20) == 1  # never less than one
    assert memory.pictures_that_fit(10**15, 64 * 64, "bf16-mixed", 5) == 16  # never more than the cap


def test_a_size_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path, capsys):
    out = tmp_path / "huge"
    code, err = cli(capsys, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=100000",
                             "model.weights=random", "logger.mode=disabled", f"output.dir={out}"])
    assert_one_line_error(code, err, "data.size", "needs about", "trainer.check_memory=false")
    assert not out.exists()


# ----------------------------------------------------------------------------- trainer settings for one run

@pytest.mark.parametrize("setting, words", [
    ("trainer.devices=2", ("trainer.devices", "one device", "sweep")),
    ("trainer.devices=[0,1]", ("trainer.devices", "one device", "sweep")),
    ("trainer.precision=64", ("trainer.precision", "64 is not supported")),
    ("trainer.log_every_n_steps=5", ("trainer.log_every_n_steps", "removed", "logger.log_every")),
])
def test_settings_one_run_cannot_use_are_one_line_errors(tmp_path, capsys, setting, words):
    out = tmp_path / "run"
    code, err = cli(capsys, [f"data.content={CONTENT}", f"data.style={STYLE}", "model.weights=random",
                             f"output.dir={out}", setting])
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_devices_auto_is_one_device_not_ddp(tmp_path, capsys):
    code, err = cli(capsys, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=32", "scales.min=0",
                             "trainer.max_steps=2", "model.weights=random", "logger.mode=disabled",
                             "trainer.devices=auto", "trainer.enable_progress_bar=false",
                             f"output.dir={tmp_path / 'run'}"])
    assert code == 0, err
    assert os.path.isfile(tmp_path / "run" / "final.png")
