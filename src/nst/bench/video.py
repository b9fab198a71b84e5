"""`make bench-video`: one clip stylized both ways in one run, with Ruder et al.'s temporal consistency and as the
independent per-frame baseline, and the issue's goals checked in numbers.

Writes outputs/bench_video.json (both runs' metrics), outputs/bench_video.md (the table) and
outputs/bench_video.png (per-frame warping error and seconds, both ways). Goals: warping error at most 0.3x
the baseline's, at a style loss within 10% of the baseline's, and later frames at most 0.6x the first frame's
seconds. Each run's frames, final.mp4 and flow are in outputs/bench_video/{temporal,baseline}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from PIL import Image, ImageDraw, ImageFont

GOALS = {"warping_error": 0.3, "style_loss": 1.10, "later_vs_first": 0.6}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(args) -> dict:
    import torch
    from ..config import load_config
    from ..runner.loop import quiet_device_lines
    from ..video.run import run_video

    quiet_device_lines()
    torch.set_num_threads(args.threads)
    common = [f"data.content={args.content}", f"data.style={args.style}", f"data.size={args.size}",
              f"video.max_frames={args.frames}", f"trainer.max_steps={args.steps}",
              f"video.steps_later={args.steps_later}", "logger.mode=disabled", *args.overrides]
    runs = {}
    for name, temporal in (("temporal", "true"), ("baseline", "false")):
        cfg = load_config(None, [*common, f"video.temporal={temporal}",
                                 f"output.dir={os.path.join(args.out, name)}"])
        print(f"bench-video: {name} ...", flush=True)
        runs[name] = run_video(cfg).metrics
    return runs


def verdict(runs: dict) -> dict:
    t, b = runs["temporal"], runs["baseline"]
    ratio = {"warping_error": t["warping_error"] / b["warping_error"],
             "style_loss": t["style_loss"] / b["style_loss"],
             "later_vs_first": t["later_frame_seconds"] / t["first_frame_seconds"]}
    return {k: {"value": round(v, 3), "goal": GOALS[k], "met": v <= GOALS[k]} for k, v in ratio.items()}


def table(runs: dict, goals: dict, header: str) -> str:
    rows = [("warping error (mean over frames 2..N, reliable pixels)", "warping_error", "{:.3g}"),
            ("warping error of the input frames themselves", "warping_error_input", "{:.3g}"),
            ("style loss (mean of the frames' final float32 style loss)", "style_loss", "{:.4f}"),
            ("content loss (mean)", "content_loss", "{:.4f}"),
            ("seconds per frame (all frames)", "seconds_per_frame", "{:.2f}"),
            ("first frame, seconds", "first_frame_seconds", "{:.2f}"),
            ("later frames, seconds each", "later_frame_seconds", "{:.2f}")]
    lines = [header, "", "| | temporal (Ruder et al.) | per-frame baseline |", "|---|---|---|"]
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(runs['temporal'][key])} | {fmt.format(runs['baseline'][key])} |")
    lines += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    names = {"warping_error": "warping error, temporal / baseline", "style_loss": "style loss, temporal / baseline",
             "later_vs_first": "later frame / first frame seconds (temporal)"}
    for key, g in goals.items():
        lines.append(f"| {names[key]} | {g['value']:.3f} | <= {g['goal']} | {'yes' if g['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict, path: str, title: str) -> None:
    """Per-frame warping error (top) and seconds (bottom), both ways (PIL: no plotting library)."""
    w, h, pad = 760, 560, 70
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    colors = {"temporal": (200, 40, 40), "baseline": (40, 80, 200)}
    panels = [("warping error vs frame t-1", lambda m: [None] + m["per_frame_warping_error"], 40, 250),
              ("seconds per frame", lambda m: [r["seconds"] for r in m["per_frame"]], 310, 520)]
    n = max(m["frames"] for m in runs.values())
    draw.text((w / 2, 18), title, fill="black", font=font, anchor="mm")
    for label, values, top, bottom in panels:
        series = {k: values(m) for k, m in runs.items()}
        hi = max(v for s in series.values() for v in s if v is not None) * 1.1 or 1.0
        draw.line([(pad, bottom), (w - pad, bottom)], fill="black")
        draw.line([(pad, top), (pad, bottom)], fill="black")
        draw.text((pad + 5, top + 2), label, fill="black", font=font, anchor="lt")
        for i in range(5):
            y = hi * i / 4
            draw.text((pad - 6, bottom - (bottom - top) * i / 4), f"{y:.3g}", fill="black", font=font, anchor="rm")
        for t in range(0, n, max(1, n // 10)):
            draw.text((pad + (w - 2 * pad) * t / max(1, n - 1), bottom + 6), str(t + 1), fill="black", font=font,
                      anchor="mt")
        for k, s in series.items():
            points = [(pad + (w - 2 * pad) * t / max(1, n - 1), bottom - (bottom - top) * v / hi)
                      for t, v in enumerate(s) if v is not None]
            if len(points) > 1:
                draw.line(points, fill=colors[k], width=2)
            for x, y in points:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colors[k])
    for i, (k, c) in enumerate(colors.items()):
        draw.text((w - pad - 150, 40 + 16 * i), f"— {k}", fill=c, font=font, anchor="lt")
    draw.text((w / 2, h - 20), "frame", fill="black", font=font, anchor="mm")
    img.save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.video", description=__doc__.splitlines()[0])
    p.add_argument("--content", default="assets/bigbuckbunny.mp4")
    p.add_argument("--style", default="assets/starry_night.jpg")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=60, help="the first frame's steps, and every baseline frame's")
    p.add_argument("--steps-later", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest at these sizes on 2 cores)")
    p.add_argument("--out", default="outputs/bench_video")
    p.add_argument("overrides", nargs="*", help="more key=value config overrides, for both runs")
    args = p.parse_args(argv)
    runs = measure(args)
    goals = verdict(runs)
    header = (f"`make bench-video`: {args.content}, {args.frames} frames at {args.size} px "
              f"({runs['temporal']['size'][1]}x{runs['temporal']['size'][0]}), style {args.style}, first and "
              f"baseline frames {args.steps} steps, later frames {args.steps_later}, "
              f"{' '.join(args.overrides) or 'default settings'}; {cpu_name()}, {os.cpu_count()} cores, "
              f"{args.threads} torch thread(s)")
    text = table(runs, goals, header)
    print(text)
    stem = args.out.rstrip("/")
    with open(f"{stem}.md", "w") as f:
        f.write(text)
    with open(f"{stem}.json", "w") as f:
        json.dump({"args": vars(args), "cpu": cpu_name(), "goals": goals, "runs": runs}, f, indent=2)
    plot(runs, f"{stem}.png", f"{args.frames} frames at {args.size} px: temporal vs per-frame baseline")
    print(f"wrote {stem}.md, {stem}.json, {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
