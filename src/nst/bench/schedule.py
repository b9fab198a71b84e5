"""`make bench-schedule`: which coarse-to-fine schedule reaches the lowest loss soonest on this machine.

Each candidate is the real command, `train.py --config configs/starry.yaml` with the candidate's overrides (W&B
off), run one after another in fresh processes; its optimization seconds and final float32 loss come from its
metrics.json. Writes a table (outputs/bench_schedule.json) and a plot of final loss against seconds
(outputs/bench_schedule.png), side by side in one run.

    python -m nst.bench.schedule                                   # the candidates below, tubingen + starry_night
    python -m nst.bench.schedule --pair assets/hoovertowernight.jpg assets/shipwreck.jpg --only classic default
    python -m nst.bench.schedule --size 1024 --only classic default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw, ImageFont

from ..runner.hardware import describe_device
from .common import write_report

# name: overrides of configs/starry.yaml. `classic` is the schedule of configs/classic.yaml.
CANDIDATES = {
    "classic": ["scales.min=192", "scales.factor=1.4142135623730951", "scales.steps=60", "trainer.max_steps=200",
                "optim.history=50", "trainer.tolerance=0"],
    "default": [],
    "96-x2-60-160": ["scales.min=96", "scales.factor=2", "scales.steps=60", "trainer.max_steps=160",
                     "trainer.tolerance=0"],
    "96-x2-50-150": ["scales.min=96", "scales.factor=2", "scales.steps=50", "trainer.max_steps=150",
                     "trainer.tolerance=0"],
    "96-x2-80-200": ["scales.min=96", "scales.factor=2", "scales.steps=80", "trainer.max_steps=200",
                     "trainer.tolerance=0"],
    "192-x2-80-140": ["scales.min=192", "scales.factor=2", "scales.steps=80", "trainer.max_steps=140",
                      "trainer.tolerance=0"],
    "136-x1.41-40-170": ["scales.min=136", "scales.steps=40", "trainer.max_steps=170", "trainer.tolerance=0"],
    "classic-120": ["scales.min=192", "scales.steps=40", "trainer.max_steps=120", "trainer.tolerance=0"],
    "tolerance-0.002": ["trainer.tolerance=0.002", "trainer.patience=10"],
    "tolerance-0.005": ["trainer.tolerance=0.005", "trainer.patience=10"],
    "line-search-5": ["optim.line_search_evals=5", "trainer.tolerance=0"],
    "history-20": ["optim.history=20", "trainer.tolerance=0"],
}


def run_one(name: str, overrides: list[str], args: argparse.Namespace, work: str) -> dict:
    out = os.path.join(work, name)
    cmd = [sys.executable, "train.py", "--config", "configs/starry.yaml", f"data.size={args.size}",
           f"data.content={args.pair[0]}", f"data.style={args.pair[1]}", "logger.mode=disabled",
           "trainer.enable_progress_bar=false", f"output.dir={out}", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    return {"name": name, "overrides": overrides, "seconds": m["seconds"], "wall_seconds": round(wall, 2),
            "loss": m["loss"], "steps": m["steps"], "evaluations": m["evaluations"],
            "stopped": m.get("stopped", ""), "image": os.path.join(out, "final.png")}


def plot(rows: list[dict], path: str, title: str) -> None:
    """Final loss against optimization seconds, one labelled point per candidate (PIL: no plotting library)."""
    w, h, pad = 760, 480, 70
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    xs, ys = [r["seconds"] for r in rows], [r["loss"] for r in rows]
    x0, x1 = 0.0, max(xs) * 1.1
    y0, y1 = min(ys) * 0.97, max(ys) * 1.03

    def at(x: float, y: float) -> tuple[float, float]:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad), h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    draw.line([(pad, h - pad), (w - pad, h - pad)], fill="black")
    draw.line([(pad, pad), (pad, h - pad)], fill="black")
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        px, _ = at(x, y0)
        draw.text((px, h - pad + 8), f"{x:.0f}", fill="black", font=font, anchor="mt")
        y = y0 + (y1 - y0) * i / 5
        _, py = at(x0, y)
        draw.text((pad - 8, py), f"{y:.3f}", fill="black", font=font, anchor="rm")
    draw.text((w / 2, h - 25), "optimization seconds", fill="black", font=font, anchor="mm")
    draw.text((12, pad - 30), "final loss (float32)", fill="black", font=font, anchor="lm")
    draw.text((w / 2, 20), title, fill="black", font=font, anchor="mm")
    placed: list[tuple[float, float]] = []
    for r in rows:
        px, py = at(r["seconds"], r["loss"])
        color = (200, 40, 40) if r["name"] == "default" else (40, 80, 200) if r["name"] == "classic" else (90, 90, 90)
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=color)
        ly = py
        while any(abs(ly - y) < 15 and abs(px - x) < 110 for x, y in placed):  # keep labels apart
            ly += 15
        placed.append((px, ly))
        if ly != py:  # a label moved off its point: a leader line back to it
            draw.line([(px + 4, py + 3), (px + 8, ly)], fill=color)
        draw.text((px + 10, ly), r["name"], fill=color, font=font, anchor="lm")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.schedule", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--pair", nargs=2, default=["assets/tubingen.jpg", "assets/starry_night.jpg"],
                   metavar=("CONTENT", "STYLE"))
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    p.add_argument("--out", default="outputs/bench_schedule.json")
    args = p.parse_args(argv)
    device = describe_device()
    print(f"schedules on {device}: {args.pair[0]} + {args.pair[1]} at {args.size} px")
    print(f"{'candidate':>18} {'seconds':>8} {'loss':>7} {'vs classic s':>12} {'vs classic loss':>15} {'steps':>5} "
          f"{'evals':>5}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.only or list(CANDIDATES):
            r = run_one(name, CANDIDATES[name], args, work)
            rows.append(r)
            base = next((x for x in rows if x["name"] == "classic"), None)
            ratio_s = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
            ratio_l = f"{r['loss'] / base['loss']:.3f}" if base else "-"
            print(f"{name:>18} {r['seconds']:>8.1f} {r['loss']:>7.4f} {ratio_s:>12} {ratio_l:>15} {r['steps']:>5} "
                  f"{r['evaluations']:>5} {r['stopped']}", flush=True)
        stem = os.path.splitext(args.out)[0]
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        for r in rows:  # the pictures, to look at side by side
            Image.open(r["image"]).save(f"{stem}_{r['name']}.png")
            r["image"] = f"{stem}_{r['name']}.png"
    plot(rows, f"{stem}.png", f"{os.path.basename(args.pair[0])} + {os.path.basename(args.pair[1])}, "
                              f"{args.size} px, {device}")
    write_report({"device": device, "size": args.size, "pair": args.pair, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
