"""Fixtures and shared helpers: the repository root, tiny images, and running train.py as a user does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from helpers import CONTENT, ROOT, STYLE, STYLE2  # noqa: F401  (the tests import them from here too)
from helpers.train import ADAM, ADAM_STEPS, tiny, train

# Tests must never reach the network, and W&B must never prompt.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))



def run_train(*args: str, cwd: str = ROOT, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def tiny_args(out_dir: str, *extra: str, size: int = 64, steps: int = 5) -> list[str]:
    """A fast run: random VGG weights, a tiny image, a few steps, W&B offline."""
    return [f"data.content={CONTENT}", f"data.style={STYLE}", f"data.size={size}", f"trainer.max_steps={steps}",
            "model.weights=random", "logger.mode=offline", "trainer.enable_progress_bar=false",
            f"output.dir={out_dir}", *extra]


@pytest.fixture
def solid_image(tmp_path):
    def make(name: str, size=(40, 30), color=(200, 50, 50), mode="RGB"):
        path = tmp_path / name
        Image.new(mode, size, color).save(path)
        return str(path)
    return make


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """An uninterrupted Adam run: its last.ckpt holds the final float image."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = train(tiny(out, *ADAM, steps=ADAM_STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
