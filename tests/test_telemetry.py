"""Telemetry (numbers and images from the device to the sinks) and the W&B sink, on their own: what reaches a
sink, in which order, when, and what a real offline W&B run receives."""

from __future__ import annotations

import math
from concurrent.futures import Future
from types import SimpleNamespace

import torch
from PIL import Image

from helpers import CONTENT, STYLE
from helpers.wandb_records import read_run
from nst.config import load_config
from nst.images import to_pil
from nst.runner.sinks import WandbSink
from nst.runner.job import Job, prepare
from nst.runner.loop import build_module
from nst.runner.telemetry import Sink, Telemetry


class Recorder(Sink):
    def __init__(self):
        self.events: list[tuple] = []
        self.health = None

    def on_numbers(self, step, parts):
        self.events.append(("numbers", step, parts))

    def on_image(self, steps_done, images):
        self.events.append(("image", steps_done, tuple(images.shape)))

    def on_health(self, health):
        super().on_health(health)
        self.health = health


def two_pictures(steps: int = 10, **recording):
    """The module of a batch of two pictures."""
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=32", "scales.min=0",
                             f"trainer.max_steps={steps}", "model.weights=random", "logger.mode=disabled"])
    module = build_module([prepare(Job(cfg)), prepare(Job(cfg))])
    for key, value in recording.items():
        setattr(module.recording, key, value)
    return module


def step(telemetry: Telemetry, module, trainer, s: int, loss: float) -> None:
    """What training_step leaves behind for step s, then Lightning's batch end."""
    parts = {k: torch.full((module.batch_size,), loss + i) for i, k in enumerate(module.objective.settings.part_names)}
    module._record(s, parts)
    trainer.global_step = s + 1
    telemetry.on_train_batch_end(trainer, module, None, None, s)


def test_numbers_reach_the_sinks_by_name_in_step_order_with_the_images_between_them():
    module = two_pictures(steps=10, log_every=2, image_every=4)
    recorder = Recorder()
    telemetry = Telemetry([recorder], flush_seconds=None)
    trainer = SimpleNamespace(global_step=0, max_steps=10, should_stop=False)
    telemetry.on_train_start(trainer, module)
    for s in range(10):
        step(telemetry, module, trainer, s, loss=float(s))
    telemetry.on_train_end(trainer, module)
    numbers = [(e[1], e[2]) for e in recorder.events if e[0] == "numbers"]
    assert [s for s, _ in numbers] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # logged (even) and shown (every step here)
    assert numbers[3][1][0]["loss"] == 3.0 and numbers[3][1][0]["content_loss"] == 4.0  # named, not positional
    assert numbers[3][1][1]["evaluations"] == 0.0
    images = [e for e in recorder.events if e[0] == "image"]
    assert [e[1] for e in images] == [4, 8] and images[0][2] == (2, 3, *module.target.shape[-2:])
    steps_seen = [e[1] for e in recorder.events]
    assert steps_seen == sorted(steps_seen)  # W&B wants steps that never go back
    assert [h.alive for h in recorder.health] == [True, True]


def test_a_failed_picture_reaches_the_sinks_with_its_step_and_loss():
    module = two_pictures()
    recorder = Recorder()
    telemetry = Telemetry([recorder], flush_seconds=None)
    trainer = SimpleNamespace(global_step=0, max_steps=10, should_stop=False)
    telemetry.on_train_start(trainer, module)
    module.alive[1] = False
    module.bad[1] = torch.tensor([3.0, float("inf")])
    telemetry.send(module)
    telemetry.receive(wait=True)
    first, second = recorder.health
    assert first.alive and first.message == ""
    assert not second.alive and second.bad_step == 3 and second.message.startswith("loss became inf at step 3")


def test_without_a_wall_clock_flush_transfers_happen_at_fixed_steps_whatever_the_time():
    module = two_pictures(steps=20)
    telemetry = Telemetry([Recorder()], flush_seconds=None)
    trainer = SimpleNamespace(global_step=0, max_steps=20, should_stop=False)
    telemetry.on_train_start(trainer, module)
    sent = []
    original = telemetry.send
    telemetry.send = lambda m: (sent.append(trainer.global_step), original(m))
    for s in range(20):
        telemetry.last_flush = -math.inf  # as if the machine were arbitrarily slow
        step(telemetry, module, trainer, s, loss=1.0)
    assert sent == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]  # every tenth of the run, nothing more


def test_the_wandb_sink_logs_what_waited_for_a_starting_run_in_order(tmp_path):
    import wandb
    starting: Future = Future()
    content, style = Image.open(CONTENT).convert("RGB"), Image.open(STYLE).convert("RGB")
    sink = WandbSink([starting], [to_pil], [content], [style], logged=lambda s: s % 2 == 0, scale_of=lambda s: 0)
    sink.on_start(None, SimpleNamespace(batch_size=1))
    for s in range(6):
        sink.on_numbers(s, [{"loss": 10.0 - s, "style_loss": 1.0}])
    sink.on_image(4, torch.full((1, 3, 24, 32), 0.5))
    assert len(sink.queued[0]) == 4  # nothing logged while the run is starting: the steps did not wait for it
    run = wandb.init(mode="offline", dir=str(tmp_path), project="test", reinit="create_new")
    starting.set_result(run)
    sink.ready(0)
    run.finish()
    [folder] = [p for p in (tmp_path / "wandb").iterdir() if p.name.startswith("offline-run-")]
    record = read_run(str(folder))
    assert record.history_steps == [0, 2, 4]
    assert {"loss", "style_loss", "scale", "progress/_type"} <= record.history_keys
    assert record.summary["min_loss"] == 6.0
    [grid] = record.images
    with Image.open(grid) as im:
        assert im.mode == "RGB" and im.getextrema() != ((0, 0), (0, 0), (0, 0))  # not all black
