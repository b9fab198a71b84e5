"""Running `python -m nst.sweep` and torchrun sweeps as a user does, on small grids, and reading what they left."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys

from helpers import ROOT, forks

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # torchrun, wherever its script was installed
CONTENTS = ["assets/tubingen.jpg", "assets/golden_gate.jpg"]
STYLES = ["assets/starry_night.jpg", "assets/the_scream.jpg"]
PAIRS = [f"{c}__{s}" for c in ("tubingen", "golden_gate") for s in ("starry_night", "the_scream")]
CELL = 48


def tiny(out_dir, *extra: str, contents=CONTENTS, styles=STYLES, mode: str = "offline") -> list[str]:
    return ["--config", os.path.join(ROOT, "configs", "sweep.yaml"), "model.weights=random", "data.size=32",
            "trainer.max_steps=5", "trainer.accelerator=cpu", f"logger.mode={mode}", "logger.image_every=0", f"output.dir={out_dir}",
            f"sweep.cell={CELL}", "sweep.name=test-sweep", f"sweep.contents=[{','.join(contents)}]",
            f"sweep.styles=[{','.join(styles)}]", *extra]


def env_for(tmp_path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    # One thread: tiny convolutions gain nothing from two, and two processes of two threads on two cores spin.
    # W&B's own caches and settings go to the test's folder, never the user's home.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_DIR=str(tmp_path),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_DATA_DIR=str(tmp_path / "wandb-data"), WANDB_SILENT="true", **extra)
    return env


def torchrun(tmp_path, *args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, f"--nproc_per_node={nproc}", "-m", "nst.sweep", *args], cwd=ROOT,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=300)


def sweep(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m nst.sweep ARGS`, one process (forked from the pre-imported Python, see forks.py)."""
    return forks.run(["-m", "nst.sweep", *args], env=env or env_for(tmp_path))


def start(tmp_path, *args: str, env: dict | None = None):
    """`python -m nst.sweep ARGS` started, its stdout and stderr in one pipe."""
    return forks.popen(["-m", "nst.sweep", *args], env=env or env_for(tmp_path), stderr=forks.STDOUT)


def summary(out) -> list[dict]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def ran(log: str) -> list[str]:
    """Pairs whose optimization finished in this invocation, one entry per time, from every rank's lines."""
    return re.findall(r"\d+/\d+ (\S+): done in ", log)


def run_share_here(cfg) -> list:
    """This process's share of the sweep `cfg`, run in this process (one rank, a heartbeat closed after): the
    results of sweep/batch.run_share, for tests that replace its fit_batch."""
    from nst.sweep import batch as sweep_batch
    from nst.sweep.claims import Heartbeat
    from nst.sweep.plan import plan
    from nst.sweep.processes import Dist

    heartbeat = Heartbeat()
    try:
        return sweep_batch.run_share(cfg, plan(cfg), Dist(), None, heartbeat, since=0.0)
    finally:
        heartbeat.close()
