"""Memory a run needs, estimated before anything is allocated: `sweep.batch=auto` fills a GPU with it, and a
`data.size` too large for the device (or, on the CPU, for the machine) is refused up front with the estimate.

Per output pixel of one picture at its largest scale, at the peak of an evaluation (forward + backward through
VGG19 to conv5_1, with the loss), besides the optimizer's state: about 2 KB in bf16, measured on an H200 at
512 px with a batch of one (cuDNN's workspaces and the allocator's slack included). Float32 needs 1.7 times the
bf16 figure: 2.13 against 1.26 KB per pixel for a forward+backward pass at 288x384 on the CPU. The optimizer adds
image-sized float32 vectors, 24 bytes per pixel for each pair of them: an (s, y) pair per unit of L-BFGS history,
or Adam's two moments. A tenth more is kept as margin, and the weights come on top. Runs record their peak
(`peak_memory_mb` in metrics.json, on a GPU) so that the figures can be checked; `make bench-gpu` sets the two
side by side.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

ACTIVATION_BYTES_PER_PIXEL = {"bf16-mixed": 2000, "16-mixed": 2000, "32-true": 3400}
VECTOR_PAIR_BYTES_PER_PIXEL = 2 * 3 * 4  # two image-sized float32 vectors (an L-BFGS (s, y) pair, Adam's moments)
MARGIN = 1.1
FIXED_BYTES = 300 * 2**20  # VGG19 to conv5_1 in float32 and bf16 (80 + 40 MB), allocator slack, the CUDA context's share


def bytes_per_picture(pixels: int, precision: str, history: int) -> int:
    """Peak bytes one picture of `pixels` output pixels adds to a batch; `history`: L-BFGS pairs (1 for Adam)."""
    per_pixel = ACTIVATION_BYTES_PER_PIXEL.get(precision, ACTIVATION_BYTES_PER_PIXEL["32-true"])
    return math.ceil(MARGIN * pixels * (per_pixel + history * VECTOR_PAIR_BYTES_PER_PIXEL))


def history_units(optim_name: str, history: int) -> int:
    return history if optim_name == "lbfgs" else 1


def pictures_that_fit(free_bytes: int, pixels: int, precision: str, history: int, sharing: int = 1,
                      most: int = 16) -> int:
    """How many pictures of this size fit in a batch, in 80% of the free memory divided between the `sharing`
    processes that use the same GPU; between 1 and `most`."""
    budget = int(0.8 * free_bytes / max(1, sharing)) - FIXED_BYTES
    return max(1, min(most, budget // bytes_per_picture(pixels, precision, history)))


def host_memory_bytes(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> Optional[int]:
    """Memory this process can get for a new allocation now, or None where nothing can be read: the smallest of
    the machine's MemAvailable, what its cgroup (v2 or v1: a container's or a SLURM job's limit) leaves, and what
    RLIMIT_AS (ulimit -v) leaves of the address space."""
    found = [n for n in (_mem_available(proc), cgroup_room(proc, cgroups), address_space_room(proc)) if n is not None]
    return max(0, min(found)) if found else None


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _mem_available(proc: str) -> Optional[int]:
    try:
        with open(os.path.join(proc, "meminfo")) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_room(proc: str = "/proc", cgroups: str = "/sys/fs/cgroup") -> Optional[int]:
    """Limit minus usage of this process's memory cgroup and of every cgroup above it (the tightest), v2
    (memory.max, memory.current) or v1 (memory.limit_in_bytes, memory.usage_in_bytes); None without a limit."""
    try:
        with open(os.path.join(proc, "self", "cgroup")) as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    rooms = []
    for _, controllers, path in (parts for parts in lines if len(parts) == 3):
        if controllers == "":
            base, files = cgroups, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, files = os.path.join(cgroups, "memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        here = path.strip("/")
        while True:  # the cgroup's own folder up to the root (in a container, the root is its own cgroup)
            limit, usage = (_read_int(os.path.join(base, here, name)) for name in files)
            if limit is not None and usage is not None and limit < 2**60:  # v1 says "no limit" with a huge number
                rooms.append(limit - usage)
            if not here:
                break
            here = os.path.dirname(here)
    return min(rooms) if rooms else None


def address_space_room(proc: str = "/proc") -> Optional[int]:
    """RLIMIT_AS (ulimit -v, prlimit --as) minus this process's address space now; None without a limit."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open(os.path.join(proc, "self", "status")) as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        size = 0
    return soft - size


def device_memory_bytes(accelerator: str, device_index: int = 0) -> tuple[Optional[int], str]:
    """(bytes, what they are) of the memory a run on `accelerator` can use."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device_index)
        return free, f"free on {torch.cuda.get_device_name(device_index)}"
    return host_memory_bytes(), "available to this process (MemAvailable, its cgroup limit, ulimit -v)"


def describe(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
