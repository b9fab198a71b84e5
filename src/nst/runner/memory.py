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


def host_memory_bytes() -> Optional[int]:
    """Memory this machine can give a new allocation now (MemAvailable), or None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def device_memory_bytes(accelerator: str, device_index: int = 0) -> tuple[Optional[int], str]:
    """(bytes, what they are) of the memory a run on `accelerator` can use."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device_index)
        return free, f"free on {torch.cuda.get_device_name(device_index)}"
    return host_memory_bytes(), "available on this machine"


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
