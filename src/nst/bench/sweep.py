"""`make bench-sweep`: sweep throughput in pairs per hour, measured the way users run it, in three modes: one
process, several processes (sharing the device, or one per GPU), and one process optimizing batches of pairs.

Each measurement is the real command, `torchrun --nproc_per_node=N -m nst.sweep sweep.batch=B`, on the same grid
of pairs into a fresh folder (wall clock: start-up, W&B runs, the summary and contact sheet included). The same
command is then run again on the finished folder: every pair is skipped, so that second time is the fixed cost
of one launch (imports, rendezvous, summary), and `steady` is the rate without it. Writes
outputs/bench_sweep.json.

    python -m nst.bench.sweep                           # 1x1, 2x1, 1xauto: 3 x 4 pairs at 64 px, 30 steps
    python -m nst.bench.sweep --modes 1x1 4x1 1xauto --size 512 --steps 200    # e.g. on one GPU
    python -m nst.bench.sweep --batch-probe --size 64       # what batching could gain per step here

`--batch-probe` measures only the compute of one optimization step (VGG19 forward and backward with the Gram
losses, the precision `auto` picks) for B images at once, per image, against one image at a time.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image

from ..images import fit_size
from ..model.gram import gram
from ..model.vgg import load_vgg19
from ..runner.hardware import describe_device, resolve_accelerator, resolve_precision, tune_backends
from .common import median_ms, write_report

CONTENTS = ["assets/tubingen.jpg", "assets/golden_gate.jpg", "assets/hoovertowernight.jpg"]
STYLES = ["assets/starry_night.jpg", "assets/the_scream.jpg", "assets/shipwreck.jpg",
          "assets/woman-with-hat-matisse.jpg"]


def parse_mode(text: str) -> tuple[int, str]:
    """"2x1": 2 processes, sweep.batch=1; "1xauto": one process, batches as large as fit."""
    procs, _, batch = text.partition("x")
    if not procs.isdigit() or int(procs) < 1 or not (batch == "auto" or batch.isdigit() and int(batch) >= 1):
        raise argparse.ArgumentTypeError(f"'{text}' is not PROCESSESxBATCH (for example 1x1, 4x1 or 1xauto)")
    return int(procs), batch


def _launch(nproc: int, overrides: list[str], log_path: str) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "-m", "nst.sweep", "--config",
           "configs/sweep.yaml", *overrides]
    start = time.perf_counter()
    with open(log_path, "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log_path}")
    return seconds


def measure(nproc: int, batch: str, args: argparse.Namespace, work: str) -> dict:
    name = f"{nproc}x{batch}"
    out = os.path.join(work, name)
    log_path = os.path.join(work, f"{name}.log")
    overrides = [f"output.dir={out}", f"data.size={args.size}", f"trainer.max_steps={args.steps}",
                 f"model.weights={args.weights}", f"logger.mode={args.logger}", f"sweep.name=bench-{name}",
                 f"sweep.batch={batch}",
                 f"sweep.contents=[{','.join(CONTENTS[:args.contents])}]",
                 f"sweep.styles=[{','.join(STYLES[:args.styles])}]", *args.overrides]
    wall = _launch(nproc, overrides, log_path)
    with open(os.path.join(out, "summary.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if any(r["status"] != "done" for r in rows):
        raise RuntimeError(f"not every pair was computed in the first launch; see {out}/summary.csv")
    fixed = _launch(nproc, overrides, log_path)  # everything complete: only the launch's own cost
    pairs = len(rows)
    per_pair = [float(r["total_seconds"]) for r in rows]
    batches = sorted({int(r["batch"]) for r in rows if r["batch"]})
    return {"mode": name, "nproc": nproc, "batch": batch, "batch_sizes": batches, "pairs": pairs, "wall_seconds": round(wall, 1), "launch_seconds": round(fixed, 1),
            "pairs_per_hour": round(pairs / wall * 3600), "steady_pairs_per_hour": round(pairs / max(wall - fixed, 1e-9) * 3600),
            "mean_pair_seconds": round(sum(per_pair) / pairs, 2)}


def batch_probe(size: int, batches: list[int], repeats: int = 6) -> dict:
    """Milliseconds per image and step for B images in one batch (see the module's docstring)."""



    accelerator = resolve_accelerator("auto")
    tune_backends(accelerator)
    device = "cuda" if accelerator == "gpu" else "cpu"
    bf16 = resolve_precision("auto", accelerator).startswith("bf16")
    layers = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1"]
    extractor = load_vgg19("caffe", "max", "conv5_1").to(device)
    with Image.open(CONTENTS[0]) as im:
        w, h = fit_size(im.size, size)
    out = {}
    for b in batches:
        x = torch.rand(b, 3, h, w, device=device, requires_grad=True)

        def evaluation():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                feats = extractor(x, layers)
            with torch.autocast(device, enabled=False):
                loss = sum(gram(f).square().sum() for f in feats.values())
            loss.backward()

        out[b] = median_ms(evaluation, repeats, warmup=2) / b
    return {"device": describe_device(), "size": size, "hw": [h, w], "ms_per_image_step": {b: round(v, 2) for b, v in out.items()},
            "gain_over_batch_1": {b: round(out[batches[0]] / v, 2) for b, v in out.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.sweep", description=__doc__.splitlines()[0])
    p.add_argument("--modes", type=parse_mode, nargs="+", default=[(1, "1"), (2, "1"), (1, "auto")],
                   help="PROCESSESxBATCH to measure: 1x1, 4x1 (four processes share the device), 1xauto")
    p.add_argument("--contents", type=int, default=3, choices=range(1, len(CONTENTS) + 1))
    p.add_argument("--styles", type=int, default=4, choices=range(1, len(STYLES) + 1))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--weights", default="caffe")
    p.add_argument("--logger", default="offline", help="W&B mode of the pairs (offline: as a user runs it)")
    p.add_argument("--out", default="outputs/bench_sweep.json")
    p.add_argument("--keep", action="store_true", help="keep the sweeps' output folders")
    p.add_argument("--batch-probe", action="store_true", help="only measure what batching pairs could gain")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16], help="batch sizes for --batch-probe")
    p.add_argument("overrides", nargs="*", help="more key=value overrides for every sweep")
    args = p.parse_args(argv)
    if args.batch_probe:
        r = batch_probe(args.size, args.batches)
        print(f"one optimization step per image at {r['hw'][1]}x{r['hw'][0]} on {r['device']}:")
        for b, ms in r["ms_per_image_step"].items():
            print(f"  batch {b:>3}: {ms:8.2f} ms per image, {r['gain_over_batch_1'][b]:.2f}x batch 1")
        return 0

    report = {"device": describe_device(), "grid": f"{args.contents} contents x {args.styles} styles",
              "size": args.size, "steps": args.steps, "weights": args.weights, "logger": args.logger,
              "overrides": args.overrides, "runs": []}
    print(f"sweep throughput on {report['device']}: {report['grid']}, {args.size} px, {args.steps} steps, "
          f"{args.weights} weights, W&B {args.logger}")
    print(f"{'procs':>5} {'batch':>7} {'pairs':>5} {'wall s':>7} {'launch s':>8} {'pairs/h':>8} "
          f"{'steady pairs/h':>14} {'s/pair':>7}", flush=True)
    work = tempfile.mkdtemp(prefix="nst-bench-sweep-")
    try:
        for nproc, batch in args.modes:
            r = measure(nproc, batch, args, work)
            report["runs"].append(r)
            sizes = "/".join(map(str, r["batch_sizes"])) if batch == "auto" else batch
            print(f"{r['nproc']:>5} {sizes:>7} {r['pairs']:>5} {r['wall_seconds']:>7.1f} {r['launch_seconds']:>8.1f} "
                  f"{r['pairs_per_hour']:>8} {r['steady_pairs_per_hour']:>14} {r['mean_pair_seconds']:>7.2f}",
                  flush=True)
    finally:
        if args.keep:
            print(f"outputs and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    base = report["runs"][0]["pairs_per_hour"]
    for r in report["runs"]:
        r["speedup"] = round(r["pairs_per_hour"] / base, 2)
    print(f"speed-up over {report['runs'][0]['mode']}: "
          + ", ".join(f"{r['mode']}: {r['speedup']:.2f}x" for r in report["runs"]))
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
