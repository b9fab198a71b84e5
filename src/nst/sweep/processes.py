"""The processes of a sweep: rank and device from the launcher (torchrun, SLURM, or none), and the one point where
they meet, at the end.

Pairs are independent optimizations, not one distributed model: each process takes `pairs[rank::world_size]`
and runs them with single-device Trainers that never see the launcher's variables. Nothing is averaged between
processes.
"""

from __future__ import annotations

import datetime
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import lightning.pytorch  # noqa: F401  (sets Lightning's rank from the environment at import; reset below)
import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from ..runner.hardware import resolve_accelerator

# What launchers set and Lightning looks at to pick a cluster environment or a rank. Hidden while a pair's
# single-device Trainer runs, so Lightning treats it as the plain one-process run it is.
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "NODE_RANK", "TORCHELASTIC_RUN_ID",
                 "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NNODES",
                 "SLURM_NODEID", "JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_LOCAL_RANK")
WAIT_DAYS = 7  # how long a rank that finished early waits for the others at the end


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"  # torchrun | slurm | none


def dist_info(env: Optional[dict] = None) -> Dist:
    """Rank and world size from torchrun's variables, else from SLURM's (srun), else one process."""
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return Dist(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)),
                    int(env.get("LOCAL_WORLD_SIZE", world)), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        world = int(env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"]))
        per_node = env.get("SLURM_NTASKS_PER_NODE", "")
        local_world = int(per_node) if per_node.isdigit() else world
        return Dist(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), local_world, "slurm")
    return Dist()


class Meeting:
    """The one point where the processes meet: at the end, rank 0 collects everybody's results.

    A gloo process group on the CPU (torchrun's rendezvous, or SLURM's first node); used for nothing else, so
    the pairs' Trainers never see it. A rank that finishes early waits (up to WAIT_DAYS) for the others."""

    def __init__(self, d: Dist):
        self.d = d
        self.active = False
        if d.world_size == 1:
            return
        if d.launcher == "slurm":
            if "MASTER_ADDR" not in os.environ:
                os.environ["MASTER_ADDR"] = SLURMEnvironment.resolve_root_node_address(
                    os.environ.get("SLURM_NODELIST", "127.0.0.1"))
            if "MASTER_PORT" not in os.environ:  # Lightning's rule: 15000 + the job id's last 4 digits
                os.environ["MASTER_PORT"] = str(15000 + int(os.environ.get("SLURM_JOB_ID", "0")[-4:] or 0))
        dist.init_process_group("gloo", rank=d.rank, world_size=d.world_size,
                                timeout=datetime.timedelta(days=WAIT_DAYS))
        self.active = True

    def gather(self, obj: Any) -> Optional[list]:
        if not self.active:
            return [obj]
        out = [None] * self.d.world_size if self.d.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def close(self) -> None:
        if self.active:
            dist.destroy_process_group()
            self.active = False


@contextmanager
def hidden_launcher_env() -> Iterator[None]:
    """Hide the launcher's rank variables from Lightning while a single-device pair runs."""
    saved = {k: os.environ.pop(k) for k in LAUNCHER_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def independent_process_logging() -> None:
    """Lightning sets rank_zero_only.rank from RANK/SLURM_PROCID at import and then silences loggers and
    messages on ranks > 0 (WandbLogger.experiment becomes a dummy). Every process here is its own run."""
    # Only the packages already imported: importing the standalone pytorch_lightning would also re-point
    # Lightning's shared rank-zero logger at its own, unquieted logger.
    for module in ("lightning_utilities.core.rank_zero", "lightning.fabric.utilities.rank_zero",
                   "lightning_fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                   "pytorch_lightning.utilities.rank_zero"):
        if module in sys.modules:
            sys.modules[module].rank_zero_only.rank = 0


def pick_device(cfg: DictConfig, d: Dist) -> Optional[int]:
    """The CUDA device index of this process (LOCAL_RANK modulo the visible GPUs), or None for the CPU."""
    if resolve_accelerator(cfg.trainer.accelerator) not in ("gpu", "cuda") or not torch.cuda.is_available():
        if d.local_world_size > 1 and torch.get_num_threads() == 1:
            # torchrun sets OMP_NUM_THREADS=1 for several processes; on a CPU give each its share of the cores.
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(max(1, cores // d.local_world_size))
        return None
    index = d.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return index


