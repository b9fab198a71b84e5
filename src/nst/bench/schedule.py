"""`make bench-schedule`: which coarse-to-fine schedule reaches the lowest loss soonest on this machine.

Each candidate is the real command, `train.py --config CONFIG` with the candidate's overrides (W&B offline), run
one after another in fresh processes; its optimization seconds and final float32 loss come from its
metrics.json, and its work in full-size passes (steps weighted by their scale's pixels) from its config. Writes
a table (outputs/bench_schedule.json) and plots of final loss against seconds (outputs/bench_schedule.png) and
against passes (outputs/bench_schedule_passes.png), side by side in one run; with `--repeat N`, N rounds of
all candidates and each one's fastest round (on a shared machine the same command's time varies by up to 40%;
losses are the same in every round). `classic` is the schedule the default had before this study
(configs/classic.yaml): 60 steps at each scale of a sqrt(2) ladder, history 50, L-BFGS restarted at each scale.

    python -m nst.bench.schedule --repeat 2                        # the candidates below, tubingen + starry_night
    python -m nst.bench.schedule --pair assets/hoovertowernight.jpg assets/shipwreck.jpg --only classic default
    python -m nst.bench.schedule --config configs/large.yaml --classic-steps 250 --only classic default
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw, ImageFont

from ..config import load_config, scale_sizes, steps_per_scale
from ..images import fit_size
from ..runner.hardware import describe_device
from .common import write_report

CLASSIC = ["scales.factor=1.4142135623730951", "scales.steps=60", "optim.history=50", "optim.carry_history=false",
           "trainer.tolerance=0"]  # + trainer.max_steps=--classic-steps
# name: overrides of the config (configs/starry.yaml: 384 px, scales.min=192).
CANDIDATES = {
    "classic": CLASSIC,
    "default": [],
    "classic+carry": ["scales.factor=1.4142135623730951", "scales.steps=60", "optim.history=50",
                      "trainer.tolerance=0", "trainer.max_steps=200"],
    "x2-40-140": ["scales.steps=40", "trainer.max_steps=140"],
    "x2-60-160": ["trainer.max_steps=160"],
    "x2-80-180": ["scales.steps=80", "trainer.max_steps=180"],
    "128-x3-80-180": ["scales.min=128", "scales.factor=3", "scales.steps=80", "trainer.max_steps=180"],
    "256-x1.5-60-150": ["scales.min=256", "scales.factor=1.5"],
    "history-50": ["optim.history=50"],
    "history-10": ["optim.history=10"],
    "tolerance-0.005": ["trainer.tolerance=0.005", "trainer.patience=10"],
    "single-140": ["scales.min=0", "trainer.max_steps=140"],
}


def import_seconds() -> dict:
    """Seconds to import what a run needs, one after another in a fresh process (as train.py does)."""
    code = ("import json,time;t=[time.perf_counter()]\n"
            "for m in ('torch','lightning','wandb','nst.runner.run'):\n"
            " __import__(m);t.append(time.perf_counter())\n"
            "print(json.dumps({m:round(b-a,3) for m,a,b in zip(('torch','lightning','wandb','nst'),t,t[1:])}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(name: str, overrides: list[str], args: argparse.Namespace, work: str) -> dict:
    out = os.path.join(work, name)
    if name == "classic":
        overrides = [*overrides, f"trainer.max_steps={args.classic_steps}"]
    size = [f"data.size={args.size}"] if args.size else []
    cmd = [sys.executable, "train.py", "--config", args.config, *size, f"data.content={args.pair[0]}",
           f"data.style={args.pair[1]}", f"logger.mode={args.logger}", "trainer.enable_progress_bar=false",
           f"output.dir={out}", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    # wall - total_seconds: interpreter start, imports and exit; total_seconds - seconds: reading the inputs and
    # weights, building the Trainer, the final float32 evaluation and the writes
    return {"name": name, "overrides": overrides, "seconds": m["seconds"], "wall_seconds": round(wall, 2),
            "total_seconds": m["total_seconds"], "overhead_seconds": round(wall - m["seconds"], 2),
            "passes": round(full_size_passes(os.path.join(out, "config.yaml"), m["steps"]), 1),
            "loss": m["loss"], "steps": m["steps"], "evaluations": m["evaluations"],
            "stopped": m.get("stopped", ""), "size": m["size"], "image": os.path.join(out, "final.png")}


def full_size_passes(config_path: str, steps: int) -> float:
    """The work of a run's steps in full-size forward+backward passes: each step weighted by its scale's pixels.
    Unlike seconds, this does not vary with the machine's load (the few extra evaluations of a first step's
    line search are left out)."""
    cfg = load_config(config_path)
    with Image.open(cfg.data.content) as content:
        pixels = [math.prod(fit_size(content.size, side)) for side in scale_sizes(cfg)]
    work, done = 0.0, 0
    for n, px in zip(steps_per_scale(cfg), pixels):
        take = max(0, min(n, steps - done))
        work, done = work + take * px / pixels[-1], done + take
    return work


AXES = {"seconds": "optimization seconds", "passes": "work: full-size forward+backward passes"}


def plot(rows: list[dict], path: str, title: str, x_key: str = "seconds") -> None:
    """Final loss against optimization seconds (or passes), one labelled point per candidate (PIL: no plotting
    library)."""
    w, h, pad = 760, 480, 70
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    xs, ys = [r[x_key] for r in rows], [r["loss"] for r in rows]
    x0, x1 = min(xs) - 0.15 * (max(xs) - min(xs) + 1), max(xs) + 0.35 * (max(xs) - min(xs) + 1)
    y_span = max(max(ys) - min(ys), 1e-3 * max(ys))  # one candidate, or equal losses: still a range
    y0, y1 = min(ys) - 0.1 * y_span, max(ys) + 0.1 * y_span

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
    draw.text((w / 2, h - 25), AXES[x_key], fill="black", font=font, anchor="mm")
    draw.text((12, pad - 30), "final loss (float32)", fill="black", font=font, anchor="lm")
    draw.text((w / 2, 20), title, fill="black", font=font, anchor="mm")
    ahead = {"classic": 1, "default": 2}  # drawn last, on top of the others
    rows = sorted(rows, key=lambda r: ahead.get(r["name"], 0))
    points = [at(r[x_key], r["loss"]) for r in rows]
    taken = [(px - 6, py - 6, px + 6, py + 6) for px, py in points]  # boxes labels must not cover
    colors = [{"default": (200, 40, 40), "classic": (40, 80, 200)}.get(r["name"], (90, 90, 90)) for r in rows]
    for color, (px, py) in zip(colors, points):
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=color)
    for r, color, (px, py) in zip(rows, colors, points):  # each label at the first free place near its point
        width = draw.textlength(r["name"], font=font)
        for dy in (0, -15, 15, -30, 30, -45, 45, -60, 60, -75, 75):
            for side in (1, -1):
                lx = px + 10 if side > 0 else px - 10 - width
                box = (lx, py + dy - 8, lx + width, py + dy + 8)
                if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                    break
            else:
                continue
            break
        taken.append(box)
        if dy:  # moved off its point: a leader line back to it
            draw.line([(px, py), (lx if side > 0 else lx + width, py + dy)], fill=color)
        draw.text((lx, py + dy), r["name"], fill=color, font=font, anchor="lm")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.schedule", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/starry.yaml")
    p.add_argument("--size", type=int, default=0, help="data.size (default: the config's)")
    p.add_argument("--classic-steps", type=int, default=200, help="trainer.max_steps of the classic schedule")
    p.add_argument("--logger", default="offline", choices=["offline", "disabled"], help="W&B, as make run has it")
    p.add_argument("--pair", nargs=2, default=["assets/tubingen.jpg", "assets/starry_night.jpg"],
                   metavar=("CONTENT", "STYLE"))
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of all candidates; each candidate's seconds are its fastest round's")
    p.add_argument("--out", default="outputs/bench_schedule.json")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    device = describe_device()
    print(f"schedules on {device}: {args.pair[0]} + {args.pair[1]}, {args.config}"
          f"{f' at {args.size} px' if args.size else ''}")
    imports = import_seconds()
    print("imports, seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in imports.items()), flush=True)
    print(f"{'candidate':>18} {'seconds':>8} {'loss':>7} {'vs classic s':>12} {'vs classic loss':>15} {'steps':>5} "
          f"{'passes':>6} {'wall - seconds':>14}", flush=True)
    best: dict[str, dict] = {}  # each candidate's fastest round
    seconds: dict[str, list[float]] = {}  # and the seconds of every round
    with tempfile.TemporaryDirectory() as work:
        for round_ in range(args.repeat):
            if args.repeat > 1:
                print(f"round {round_ + 1} of {args.repeat}", flush=True)
            for name in args.only or list(CANDIDATES):
                r = run_one(name, CANDIDATES[name], args, os.path.join(work, str(round_)))
                seconds.setdefault(name, []).append(r["seconds"])
                if name not in best or r["seconds"] < best[name]["seconds"]:
                    best[name] = r
                base = best.get("classic")
                ratio_s = f"{r['seconds'] / base['seconds']:.2f}" if base else "-"
                ratio_l = f"{r['loss'] / base['loss']:.3f}" if base else "-"
                print(f"{name:>18} {r['seconds']:>8.1f} {r['loss']:>7.4f} {ratio_s:>12} {ratio_l:>15} "
                      f"{r['steps']:>5} {r['passes']:>6.1f} {r['overhead_seconds']:>14.1f} {r['stopped']}", flush=True)
        rows = [{**r, "seconds_each": seconds[r["name"]]} for r in best.values()]
        stem = os.path.splitext(args.out)[0]
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        for r in rows:  # the pictures, to look at side by side
            Image.open(r["image"]).save(f"{stem}_{r['name']}.png")
            r["image"] = f"{stem}_{r['name']}.png"
    longest = max(rows[0]["size"]) if rows else args.size
    title = f"{os.path.basename(args.pair[0])} + {os.path.basename(args.pair[1])}, {longest} px, {device}"
    plot(rows, f"{stem}.png", title)
    plot(rows, f"{stem}_passes.png", title, "passes")
    write_report({"device": device, "config": args.config, "size": longest, "pair": args.pair,
                  "import_seconds": imports, "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
