"""Tiny clips for the video tests: a camera panning across the photograph, as frames or an mp4, the repository's
Big Buck Bunny clip, and the overrides of a tiny video run."""

from __future__ import annotations

import os
from fractions import Fraction

from PIL import Image

from helpers import CONTENT, ROOT, STYLE
from nst.video import encode


BUNNY = os.path.join(ROOT, "assets", "bigbuckbunny.mp4")
SHIFT = 3  # pixels per frame of the pan


def pan(n: int, size=(48, 32), shift: int = SHIFT) -> list[Image.Image]:
    """A camera panning right across the photograph: frame t is the crop starting at x = shift * t."""
    w, h = size
    photo = Image.open(CONTENT).convert("RGB").resize((w + shift * n + 8, h + 8), Image.Resampling.LANCZOS)
    return [photo.crop((shift * t, 4, shift * t + w, 4 + h)) for t in range(n)]


def clip_file(tmp_path, n: int, name="pan.mp4") -> str:
    path = str(tmp_path / name)
    encode.write_video(path, pan(n), Fraction(10), crf=0)
    return path


def pan_clip(tmp_path, n=4, size=(48, 32), name="pan.mp4") -> str:
    path = str(tmp_path / name)
    encode.write_video(path, pan(n, size), Fraction(10), crf=0)
    return path


def video_args(out, content, *extra, style=STYLE, size=48, steps=4):
    """A tiny video run: `steps` steps at the first frame, half as many at each later one."""
    return [f"data.content={content}", f"data.style={style}", f"data.size={size}", f"trainer.max_steps={steps}",
            f"video.steps_later={steps // 2}", "model.weights=random", "logger.mode=disabled", "trainer.precision=32",
            "trainer.enable_progress_bar=false", f"output.dir={out}", *extra]
