"""What the benchmarks share: the images they measure on, a worker in a fresh process, peak memory, reports."""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import subprocess
import sys
from typing import Callable

import torch
from PIL import Image

from ..images import fit_size

CONTENT = "assets/tubingen.jpg"
STYLE = "assets/starry_night.jpg"
MIN_BENCH_SIZE = 32  # longest side; the content image is 4:3


def median_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median milliseconds of one call of `fn` over `repeats` calls, after `warmup` calls. torch.utils.benchmark's
    Timer measures each call (it waits for the GPU before reading the clock); the median of single calls rather
    than its blocked means, because one slow call (a page fault storm, the other core's work) should not count."""
    # Importing it reaches torch.utils.cpp_extension, which warns on every machine without CUDA: not our news.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer
    timer = Timer(stmt="fn()", globals={"fn": fn})
    if warmup:
        timer.timeit(warmup)
    return statistics.median(timer.timeit(1).mean for _ in range(repeats)) * 1000


def peak_mb() -> float:
    """This process's peak: device memory held by tensors on a GPU, resident memory on a CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def content_hw(size: int) -> tuple[int, int]:
    """(height, width) of the content image at this longest side."""
    with Image.open(CONTENT) as im:
        w, h = fit_size(im.size, size)
    return h, w


def child(args: list[str], module: str = "nst.bench.speed") -> dict:
    """Run `python -m module --worker ARGS` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-m", module, "--worker", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_report(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")


