"""Running train.py as a user does (a process of its own) or as it runs itself (nst.cli.main in this process), and
checking what it said and left behind."""

from __future__ import annotations

import glob
import os
import subprocess

import torch

from helpers import CONTENT, ROOT, STYLE, forks
from nst.cli import main as cli_main
from nst.config import load_config
from nst.runner.run import run

# Single-threaded torch: on a shared 2-core machine, 2 threads are 20-30x slower for these tiny convolutions.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
       "PYTHONDONTWRITEBYTECODE": "1"}


FINAL_OUTPUTS = ("final.png", "metrics.json", "config.yaml", "last.ckpt")


def tiny(out, *extra, size=48, steps=3) -> list[str]:
    """A small run's arguments, on the CPU even where a GPU is visible (make test-gpu runs this suite there): the
    CPU suite's figures (bit-identical resumes, used.accelerator) are the CPU's. `extra` may say otherwise."""
    return [f"data.content={CONTENT}", f"data.style={STYLE}", f"data.size={size}", f"trainer.max_steps={steps}",
            "model.weights=random", "logger.mode=disabled", "trainer.enable_progress_bar=false",
            "trainer.precision=32", "trainer.accelerator=cpu", f"output.dir={out}", *extra]


def popen(args, cwd: str = ROOT, env: dict | None = None, limits: dict[str, int] | None = None):
    """`python train.py ARGS` in its own process (forked from the pre-imported Python, see forks.py),
    single-threaded, W&B disabled unless `args` or `env` say otherwise (`env` is added to ENV)."""
    return forks.popen([os.path.join(ROOT, "train.py"), *args], cwd=cwd, env={**ENV, **(env or {})}, limits=limits)


def train(args, timeout=240, **kw) -> subprocess.CompletedProcess:
    """popen, run to the end: the one way the tests run train.py in a process of its own."""
    p = popen(args, **kw)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def cli(capsys, args) -> tuple[int, str]:
    """nst.cli.main as train.py calls it: (exit status, stderr)."""
    code = cli_main(list(args))
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *words):
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-2000:]
    for w in words:
        assert w in errors[0], (w, errors[0])


def leftovers(folder) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, ".*.tmp")))


def evil_file(path, marker) -> None:
    """A pickle that runs a command when loaded without weights_only."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    torch.save({"state_dict": {"target": Evil()}, "nst": {"format": 1}}, path)


ADAM = ["optim.name=adam", "optim.lr=0.02", "scales.min=32", "scales.steps=20", "seed=3"]


ADAM_STEPS = 40  # scale 34 px for steps 0-19, 48 px for 20-39


def target_of(path) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["target"]


FAST = ["model.weights=random", "logger.mode=disabled", "trainer.enable_progress_bar=false"]


def stylized(tmp_path, name, *overrides):
    """nst.runner.run.run in this process: tubingen after The Starry Night, random weights, into tmp_path/name."""
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", *FAST,
                             f"output.dir={tmp_path / name}", *overrides])
    return run(cfg)
