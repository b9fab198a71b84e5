"""The processes of a sweep: rank and device from the launcher (torchrun, SLURM, or none), and what ties a worker's
life to its launcher's.

Pairs are independent optimizations, not one distributed model: each process takes `pairs[rank::world_size]`
first, then whatever no other process has claimed (sweep/claims.py), and runs them with single-device Trainers
that never see the launcher's variables. Processes never wait for each other: there is no collective call.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import lightning.pytorch  # noqa: F401  (sets Lightning's rank from the environment at import; reset below)
import torch
from omegaconf import DictConfig

from ..runner.hardware import resolve_accelerator

# What launchers set and Lightning looks at to pick a cluster environment or a rank. Hidden while a pair's
# single-device Trainer runs, so Lightning treats it as the plain one-process run it is.
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "NODE_RANK", "TORCHELASTIC_RUN_ID",
                 "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NNODES",
                 "SLURM_NODEID", "JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_LOCAL_RANK")
PR_SET_PDEATHSIG = 1  # prctl(2): a signal for this process when its parent dies


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"  # torchrun | slurm | none


def say(d: Dist, text: str) -> None:
    """A line of this process's, prefixed with its rank when there are several."""
    prefix = f"[rank {d.rank}/{d.world_size}] " if d.world_size > 1 else ""
    print(prefix + text, flush=True)


def process_start_time() -> float:
    """When this process was created (wall clock, Linux; elsewhere: now). The processes of one launch are created
    within moments of each other however long each one's imports take, so a pair finished after this time was
    computed by this launch and not found complete from an earlier one.

    Counted back from now on the boot clock, to the 10 ms of /proc: start_time_of's boot time is whole seconds,
    which would make a pair that an earlier launch finished up to a second before this one started look new."""
    try:
        since_boot = _ticks_since_boot("self") / os.sysconf("SC_CLK_TCK")
        return time.time() - max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.time()


def _ticks_since_boot(pid: int | str) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # from field 3 on: the command name may hold spaces
    return int(fields[19])  # field 22: start, in clock ticks since boot


def start_time_of(pid: int | str) -> Optional[float]:
    """When process `pid` ("self": this one) was created, wall clock to about a second (the same value every time
    it is read), from /proc (Linux); None when there is no such process or no /proc. With the pid it tells a
    process from a later one that was given the same pid. (psutil.Process(pid).create_time() reads the same two
    files; not a dependency worth adding for them.)"""
    try:
        ticks = _ticks_since_boot(pid)
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


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


def gpu_sharing(d: Dist, env: Optional[dict] = None) -> int:
    """How many processes of this node use this process's GPU. Under SLURM each task may see only its own GPU
    (--gpus-per-task, a cgroup): SLURM_GPUS_ON_NODE, the node's GPUs, then counts, not the GPUs visible here."""
    env = os.environ if env is None else env
    gpus = torch.cuda.device_count()
    on_node = env.get("SLURM_GPUS_ON_NODE", "")
    if d.launcher == "slurm" and on_node.isdigit() and int(on_node) > 0:
        gpus = int(on_node)
    return -(-d.local_world_size // max(1, gpus))


def die_with_launcher(d: Dist) -> bool:
    """A torchrun worker gets SIGUSR1 when torchrun dies (killed, or its node lost), so it checkpoints its pairs and
    exits instead of running on unnoticed: torchrun starts workers in sessions of their own, out of reach of
    the signals sent to its process group. SIGUSR1 rather than SIGTERM: the signal comes once per thread of
    the launcher, and a second SIGTERM would mean "stop at once, no checkpoint" (runner/interrupt.py). Linux
    only; elsewhere the worker runs until its pairs are done."""
    if d.launcher != "torchrun" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGUSR1), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
