"""Tiny clips for the video tests: a camera panning across the photograph, as frames or an mp4, and the
overrides of a tiny video run."""

from __future__ import annotations

from fractions import Fraction

from PIL import Image

from helpers import CONTENT, STYLE
from nst.video import encode


def pan(n: int, size=(48, 32), shift: int = 3) -> list[Image.Image]:
    """A camera panning right across the photograph."""
    w, h = size
    photo = Image.open(CONTENT).convert("RGB").resize((w + shift * n + 8, h + 8), Image.Resampling.LANCZOS)
    return [photo.crop((shift * t, 4, shift * t + w, 4 + h)) for t in range(n)]


def clip_file(tmp_path, n: int, name="pan.mp4") -> str:
    path = str(tmp_path / name)
    encode.write_video(path, pan(n), Fraction(10), crf=0)
    return path


def video_args(out, content, *extra, style=STYLE):
    return [f"data.content={content}", f"data.style={style}", "data.size=48", "trainer.max_steps=4",
            "video.steps_later=2", "model.weights=random", "logger.mode=disabled", "trainer.precision=32",
            "trainer.enable_progress_bar=false", f"output.dir={out}", *extra]
