"""`python -m nst.video.showcase RUN_DIR MP4 GIF`: a finished video run as original | stylized side by side, an
mp4 (with the input's audio) for docs/ and a small GIF for the README (`make video`)."""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction

from PIL import Image

from ..config import load_config
from ..files import atomic_write
from .decode import read_clip
from .encode import write_video


def side_by_side(a: Image.Image, b: Image.Image, gap: int = 4) -> Image.Image:
    out = Image.new("RGB", (a.width + gap + b.width, max(a.height, b.height)), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (a.width + gap, 0))
    return out


def main(argv: list[str]) -> int:
    run_dir, mp4, gif = argv
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    clip = read_clip(cfg.data.content, cfg.data.size, cfg.video.start, cfg.video.max_frames, cfg.video.fps)
    frames = [side_by_side(o, Image.open(os.path.join(run_dir, "frames", f"{t + 1:05d}.png")).convert("RGB"))
              for t, o in enumerate(clip.frames)]
    write_video(mp4, frames, clip.fps, clip.source if clip.audio else None, clip.start_time, clip.duration,
                cfg.video.crf)
    every = 2  # the GIF at half the frame rate keeps it small
    small = [im.convert("P", palette=Image.Palette.ADAPTIVE, colors=128) for im in frames[::every]]
    ms = round(1000 * every / float(Fraction(metrics["fps"]).limit_denominator(1001)))

    def write(f):
        small[0].save(f, format="GIF", save_all=True, append_images=small[1:], duration=ms, loop=0)
    atomic_write(gif, write)
    print(f"wrote {mp4} and {gif} ({len(frames)} frames, original | stylized)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
