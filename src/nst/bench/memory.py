"""Resident memory of one evaluation on the CPU, per output pixel: the check of runner/memory.py's figures.

    python -m nst.bench.memory              # 512 and 1024 px, 32-true and bf16-mixed, one process each
    python -m nst.bench.memory 768 bf16-mixed

Each measurement runs in a process of its own (one thread): the default config with the caffe weights at one
scale, the content and style targets (the style's forward without a graph), then one evaluation (forward and
backward through VGG19 with the loss). It prints the peak resident memory over what was resident before each
part, per output pixel, as one JSON line.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys

from .common import CONTENT, STYLE


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(size: int, precision: str) -> dict:
    import torch
    from ..config import load_config
    from ..runner.loop import module_for
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", f"data.size={size}", "scales.min=0",
                             "model.weights=caffe", "logger.mode=disabled", f"trainer.precision={precision}"])
    module = module_for(cfg)
    h, w = module.size_hw(0)
    libc = ctypes.CDLL(None)
    base = _resident()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
        module.compute_targets(0)
        targets = _peak() - base
        libc.malloc_trim(0)  # what the targets' pass freed goes back: the evaluation's own peak is measured
        before = _resident()
        loss, _ = module.losses(module.target)
        loss.sum().backward()
    pixels = h * w
    return {"size": size, "hw": [h, w], "precision": precision, "targets_bytes_per_pixel": round(targets / pixels),
            "evaluation_bytes_per_pixel": round((_peak() - before) / pixels), "peak_mb": round(_peak() / 2**20)}


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        print(json.dumps(measure(int(argv[0]), argv[1])), flush=True)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for size in (512, 1024):
        for precision in ("32-true", "bf16-mixed"):
            subprocess.run([sys.executable, "-m", "nst.bench.memory", str(size), precision], env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
