"""Fixtures (the helpers the tests import are in tests/helpers/): tiny images, one thread, a reference run.
Nothing heavy at the top: pytest-xdist's controller imports this file too, and it runs no test."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from helpers import forks

# Tests must never reach the network, and W&B must never prompt.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session", autouse=True)
def cores():
    """The cores shared among pytest-xdist's workers (the processes the tests start use one thread: helpers/)."""
    import torch
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // workers)))


def pytest_configure(config):
    """The pre-imported Python that train.py and sweep processes are forked from (helpers/forks.py), one for the
    session: started before the tests are collected, so that its imports overlap the collection, and shared by
    pytest-xdist's workers. NST_TEST_FORK=0 starts every process afresh."""
    if not hasattr(config, "workerinput"):
        forks.start_zygote()


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        forks.stop_zygote()


@pytest.fixture
def solid_image(tmp_path):
    def make(name: str, size=(40, 30), color=(200, 50, 50), mode="RGB"):
        path = tmp_path / name
        Image.new(mode, size, color).save(path)
        return str(path)
    return make


@pytest.fixture
def one_thread():
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """An uninterrupted Adam run: its last.ckpt holds the final float image."""
    from helpers.train import ADAM, ADAM_STEPS, tiny, train
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = train(tiny(out, *ADAM, steps=ADAM_STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
