"""Memory a run needs, estimated before anything is allocated: `sweep.batch=auto` fills a GPU with it, and a
`data.size` too large for the device (or, on the CPU, for the machine) is refused up front with the estimate.

Per output pixel of one picture at its largest scale, at the peak of an evaluation (forward + backward through
VGG19 to conv5_1, with the loss), besides the optimizer's state: about 2 KB in bf16, measured on an H200 at
512 px with a batch of one (cuDNN's workspaces and the allocator's slack included). Float32 needs 1.7 times the
bf16 figure: on the CPU an evaluation's resident peak is 2,298 against 1,547 B per pixel at 1024 px (1.5x) and
2,641 against 1,619..2,061 at 512 px (`python -m nst.bench.memory`, docs/sweep.md); an earlier review measured
2,244 against 1,258 (1.8x). The optimizer adds image-sized float32 vectors, 24 bytes per pixel for each pair of
them: an (s, y) pair per unit of L-BFGS history, or Adam's two moments. A tenth more is kept as margin, and the
weights come on top. The style images' forward passes (no graph, once per scale) come before the target's graph
exists: a peak of their own, 460..682 B per pixel on the CPU with the content's, not added to the training peak.
Runs record their peak (`peak_memory_mb` in metrics.json, on a GPU) so that the figures can be checked; `make
bench-gpu` sets the two side by side.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

from ..errors import ConfigError

ACTIVATION_BYTES_PER_PIXEL = {"bf16-mixed": 2000, "16-mixed": 2000, "32-true": 3400}
VECTOR_PAIR_BYTES_PER_PIXEL = 2 * 3 * 4  # two image-sized float32 vectors (an L-BFGS (s, y) pair, Adam's moments)
MARGIN = 1.1
# VGG19 to conv5_1 in float32 and bf16 (52 + 26 MB), allocator slack, the CUDA context's share
FIXED_BYTES = 300 * 2**20
# A style image's forward pass without a graph (its Grams, once per scale), per style pixel: the few activations
# alive at once; it runs before the target's graph exists, so it is a peak of its own, not an addition.
STYLE_FORWARD_BYTES_PER_PIXEL = {"bf16-mixed": 600, "16-mixed": 600, "32-true": 700}


def bytes_per_picture(pixels: int, precision: str, history: int) -> int:
    """Peak bytes one picture of `pixels` output pixels adds to a batch; `history`: L-BFGS pairs (1 for Adam)."""
    per_pixel = ACTIVATION_BYTES_PER_PIXEL.get(precision, ACTIVATION_BYTES_PER_PIXEL["32-true"])
    return math.ceil(MARGIN * pixels * (per_pixel + history * VECTOR_PAIR_BYTES_PER_PIXEL))


def batch_bytes(pictures: int, pixels: int, style_pixels: int, precision: str, history: int) -> int:
    """Peak bytes of a batch of `pictures` of `pixels` output pixels whose style images have up to `style_pixels`:
    the fixed part, then the larger of the training passes and one style image's forward (which comes first)."""
    per_pixel = STYLE_FORWARD_BYTES_PER_PIXEL.get(precision, STYLE_FORWARD_BYTES_PER_PIXEL["32-true"])
    style = math.ceil(MARGIN * style_pixels * per_pixel)
    return FIXED_BYTES + max(pictures * bytes_per_picture(pixels, precision, history), style)


def history_units(optim_name: str, history: int) -> int:
    return history if optim_name == "lbfgs" else 1


def pictures_that_fit(free_bytes: int, pixels: int, precision: str, history: int, sharing: int = 1,
                      most: int = 16) -> int:
    """How many pictures of this size fit in a batch, in 80% of the free memory divided between the `sharing`
    processes that use the same GPU; between 1 and `most`. The same estimate as a run's own check (batch_bytes; a
    style image's forward is a peak of its own, which no batch size changes), so a batch chosen here is never
    refused there with the same free memory."""
    n = (batch_budget(free_bytes, sharing) - FIXED_BYTES) // bytes_per_picture(pixels, precision, history)
    return max(1, min(most, n))


def batch_budget(free_bytes: int, sharing: int = 1) -> int:
    """What `sweep.batch=auto` may fill: 80% of the free memory, divided between the processes that share it."""
    return int(0.8 * free_bytes / max(1, sharing))


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


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError, or a cuDNN/cuBLAS allocation failure (a RuntimeError that says so)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(s in text for s in (
        "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
        "CUDA out of memory"))


class TooLarge(ConfigError):
    """A batch the device's free memory cannot hold (check_memory): a sweep runs it in halves, like an OOM."""


def describe(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


IMAGE_VECTOR_BYTES_PER_PIXEL = 6 * 3 * 4  # a tiled run's image-sized float32 tensors: image, gradients, last good...


def tiled_bytes_per_picture(pixels: int, outer_pixels: int, precision: str, history: int) -> int:
    """Peak bytes of one picture evaluated block by block: one block with its margin (`outer_pixels`) through
    VGG19, and the whole image's own vectors (the image, its gradients, the optimizer's state)."""
    per_pixel = ACTIVATION_BYTES_PER_PIXEL.get(precision, ACTIVATION_BYTES_PER_PIXEL["32-true"])
    vectors = IMAGE_VECTOR_BYTES_PER_PIXEL + history * VECTOR_PAIR_BYTES_PER_PIXEL
    return math.ceil(MARGIN * (outer_pixels * per_pixel + pixels * vectors))


def peak_rss_mb() -> int:
    """This process's peak resident memory so far (since it started, not per run), in MB."""
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
