"""`make bench-tiling`: tiled against whole evaluations (model/tiling.py); backs docs/benchmarks.md's tiling table.

    python -m nst.bench.tiling                       # about 10 minutes on 2 busy CPU cores
    python -m nst.bench.tiling --sizes 384 --only-tiled 0 --seam-steps 0

Each measurement runs in a fresh process, so that its peak resident memory is its own:
- at each size of --sizes (the paper's layers to conv5_1, 32-true, the real weights), the seconds per evaluation
  (forward and gradient, median of --repeats) whole and tiled with --block, the peak RSS, the loss difference,
  and the margin overhead ((block + 2 margin) / block)^2 that the issue's time bar is stated in;
- one size (--only-tiled) that fits only tiled: the free memory is faked at --limit-mb, below the whole
  evaluation's estimate and above the tiled one; `tiling.enabled=auto` must tile it, and its peak RSS is reported;
- the seam check: train.py's whole run, shallow layers, --seam-size px, --seam-steps steps, tiled (block
  --seam-block) and whole; final losses, the mean pixel difference of final.png, and the seam ratio (luminance
  |dx| across block-boundary columns over mid-block columns) of each.
Writes outputs/bench_tiling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from ..config import load_config
from ..runner.hardware import describe_device
from .common import CONTENT, STYLE, child, median_ms, peak_mb, write_report

SHALLOW = ["model.content_layers=[conv2_1]", "model.style_layers=[conv1_1,conv2_1,conv3_1]"]
QUIET = ["logger.mode=disabled", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu",
         "trainer.precision=32", f"data.content={CONTENT}", f"data.style={STYLE}", "scales.min=0"]


def seam_ratio(image: Image.Image, block: int) -> float:
    """Mean luminance |dx| across the columns where blocks meet over that at mid-block columns (1: no seams)."""
    y = np.asarray(image.convert("L"), dtype=np.float64)
    dx = np.abs(np.diff(y, axis=1))  # dx[:, c]: between columns c and c + 1
    w = y.shape[1]
    edges = [k * block - 1 for k in range(1, (w - 1) // block + 1) if k * block < w]
    mids = [k * block + block // 2 for k in range(0, w // block) if k * block + block // 2 < w - 1]
    return float(dx[:, edges].mean() / dx[:, mids].mean()) if edges and mids else float("nan")


def _reset_peak_rss() -> bool:
    """Linux: set this process's peak resident memory (VmHWM) back to its current one; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(key: str = "VmHWM") -> int:
    """VmHWM: the peak resident memory since the last reset; VmRSS: the current one."""
    with open("/proc/self/status") as f:
        return next(round(int(line.split()[1]) / 1024) for line in f if line.startswith(key + ":"))


def worker(args) -> dict:
    """One evaluation benchmark in this process: seconds per evaluation, loss and peak RSS."""
    from ..runner import memory, tiles
    from ..runner.loop import module_for
    extra = [f"data.size={args.size}", f"tiling.enabled={args.enabled}", f"tiling.block={args.block}"]
    cfg = load_config(None, QUIET + extra + (SHALLOW if args.shallow else []))
    if args.limit_mb:  # fake the free memory: auto decides from it
        limit = args.limit_mb * 2**20
        memory.device_memory_bytes = lambda *a: (limit, "faked")
    module = module_for(cfg)
    h, w = module.size_hw(len(module.schedule.sizes) - 1)
    module.compute_targets(len(module.schedule.sizes) - 1)
    estimate_whole = tiles.needed_bytes(cfg, 1, h, w)
    estimate_tiled = tiles.needed_bytes(cfg, 1, h, w, module.tiling) if module.tiling else None
    x = module.target.detach().clone().requires_grad_(True)

    def evaluation():
        x.grad = None
        loss, _ = module.losses(x)
        loss.sum().backward()
        return loss

    before = _peak_rss_mb("VmRSS") if os.path.exists("/proc/self/status") else None
    reset_peak = _reset_peak_rss()  # the peak of the evaluations, not of loading the weights
    loss = evaluation()
    seconds = median_ms(evaluation, repeats=args.repeats, warmup=0) / 1000
    peak = _peak_rss_mb() if reset_peak else round(peak_mb())
    blocks = module.tiling.blocks(h, w) if module.tiling is not None else None
    return {"size": [h, w], "tiled": bool(blocks), "blocks": len(blocks or [None]), "seconds": seconds,
            "loss": float(loss.sum()), "peak_rss_mb": peak, "peak_is_evaluations_only": reset_peak,
            "rss_before_mb": before,
            "estimate_whole_mb": round(estimate_whole / 2**20),
            "estimate_tiled_mb": None if estimate_tiled is None else round(estimate_tiled / 2**20),
            "margin": module.tiling.margin if module.tiling else None}


def seam_run(args, enabled: str) -> dict:
    from ..runner.run import run
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(None, QUIET + SHALLOW + [
            f"data.size={args.seam_size}", f"trainer.max_steps={args.seam_steps}", f"tiling.enabled={enabled}",
            f"tiling.block={args.seam_block}", f"output.dir={out}", "output.checkpoint=false"])
        start = time.time()
        result = run(cfg)
        image = result.image.copy()
        return {"seconds": round(time.time() - start, 2), "initial_loss": result.metrics["initial_loss"],
                "final_loss": result.metrics["loss"], "seam_ratio": seam_ratio(image, args.seam_block),
                "image": np.asarray(image, dtype=np.float64) / 255}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[384, 512])
    p.add_argument("--block", type=int, default=192)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only-tiled", type=int, default=1024, help="a size that fits only tiled (0: skip)")
    p.add_argument("--only-tiled-block", type=int, default=512)
    p.add_argument("--limit-mb", type=int, default=3072, help="the faked free memory for --only-tiled")
    p.add_argument("--seam-size", type=int, default=512)
    p.add_argument("--seam-block", type=int, default=128)
    p.add_argument("--seam-steps", type=int, default=8, help="0: skip the seam check")
    p.add_argument("--out", default="outputs/bench_tiling.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--enabled", default="false", help=argparse.SUPPRESS)
    p.add_argument("--shallow", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    common = ["--block", str(args.block), "--repeats", str(args.repeats), "--limit-mb", "0"]
    report = {"device": describe_device(), "torch": torch.__version__, "precision": "32-true",
              "command": "python -m nst.bench.tiling " + " ".join(sys.argv[1:]), "rows": []}
    for size in args.sizes:
        whole = child(["--size", str(size), "--enabled", "false", *common], "nst.bench.tiling")
        tiled = child(["--size", str(size), "--enabled", "true", *common], "nst.bench.tiling")
        overhead = ((args.block + 2 * tiled["margin"]) / args.block) ** 2
        row = {"size": whole["size"], "block": args.block, "margin": tiled["margin"], "blocks": tiled["blocks"],
               "whole_s": whole["seconds"], "tiled_s": tiled["seconds"],
               "ratio": tiled["seconds"] / whole["seconds"], "margin_overhead": overhead,
               "time_bar": 1.6 * overhead, "whole_peak_rss_mb": whole["peak_rss_mb"],
               "tiled_peak_rss_mb": tiled["peak_rss_mb"],
               "loss_rel_diff": abs(tiled["loss"] - whole["loss"]) / abs(whole["loss"])}
        report["rows"].append(row)
        print(json.dumps(row))
    if args.only_tiled:
        only = child(["--size", str(args.only_tiled), "--enabled", "auto", "--block", str(args.only_tiled_block),
                      "--repeats", "1", "--limit-mb", str(args.limit_mb)], "nst.bench.tiling")
        only["faked_free_mb"] = args.limit_mb
        report["only_tiled"] = only
        print(json.dumps(only))
    if args.seam_steps:
        runs = {name: seam_run(args, name) for name in ("false", "true")}
        diff = float(np.abs(runs["true"].pop("image") - runs["false"].pop("image")).mean())
        report["seams"] = {"size": args.seam_size, "block": args.seam_block, "steps": args.seam_steps,
                           "whole": runs["false"], "tiled": runs["true"], "mean_pixel_diff": diff}
        print(json.dumps(report["seams"]))
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
