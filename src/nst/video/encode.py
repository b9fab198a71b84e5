"""Video out with PyAV (FFmpeg bundled, works offline): H.264 in yuv420p with the input's audio stream copied,
written whole or not at all; and what a written video holds (probe). video/decode.py reads videos."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Optional

from PIL import Image

from ..files import FILE_MODE, replaced_atomically
from .decode import VideoError


def write_video(path: str, frames: Iterable[Image.Image], fps: Fraction, audio_from: Optional[str] = None,
                audio_start: float = 0.0, audio_seconds: Optional[float] = None, crf: int = 18) -> None:
    """H.264 (yuv420p) mp4 at `fps`, written to a temporary file and renamed: `path` appears whole or not at all.
    With `audio_from`, its first audio stream is copied (not re-encoded), cut to [audio_start, +audio_seconds)."""
    import av

    fps = Fraction(fps).limit_denominator(1001)
    with replaced_atomically(path) as tmp:
        with av.open(tmp, "w", format="mp4") as out:
            video = None
            source = av.open(audio_from) if audio_from else None
            try:
                audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
                audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
                for i, im in enumerate(frames):
                    if video is None:
                        video = out.add_stream("libx264", rate=fps)
                        video.width, video.height = im.size
                        video.pix_fmt = "yuv420p"
                        video.options = {"crf": str(crf), "preset": "medium"}
                    frame = av.VideoFrame.from_image(im.convert("RGB"))
                    frame.pts = i
                    frame.time_base = 1 / fps
                    out.mux(video.encode(frame))
                if video is None:
                    raise VideoError(f"{path}: no frames to encode")
                out.mux(video.encode(None))
                if audio_in is not None:
                    _copy_audio(source, audio_in, audio_out, out, audio_start, audio_seconds)
            finally:
                if source is not None:
                    source.close()
        os.chmod(tmp, FILE_MODE)  # what open() would give, not mkstemp's private 0600


def _copy_audio(source, audio_in, audio_out, out, start: float, seconds: Optional[float]) -> None:
    """The audio packets of [start, start + seconds), shifted to start at 0 (whole packets: AAC frames are 21 ms)."""
    tb = audio_in.time_base
    origin = audio_in.start_time or 0
    first_pts = None
    for packet in source.demux(audio_in):
        if packet.pts is None or packet.dts is None:
            continue  # the demuxer's flush packet
        t = float((packet.pts - origin) * tb)
        if t < start - 1e-6 or (seconds is not None and t >= start + seconds - 1e-6):
            continue
        if first_pts is None:
            first_pts = packet.pts
        packet.pts -= first_pts
        packet.dts -= first_pts
        packet.stream = audio_out
        out.mux(packet)


@dataclass
class Probe:
    """What a written video holds (for tests and checks)."""
    frames: int
    fps: Fraction
    size: tuple[int, int]
    codec: str
    pix_fmt: str
    audio: Optional[str]  # the audio codec, None without audio
    audio_packets: int = 0


def probe(path: str) -> Probe:
    import av

    with av.open(path) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
    with av.open(path) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        packets = sum(1 for p in c.demux(a) if p.size) if a is not None else 0
        v = c.streams.video[0]
        return Probe(n, Fraction(v.average_rate), (v.width, v.height), v.codec_context.name,
                     v.codec_context.pix_fmt, a.codec_context.name if a is not None else None, packets)
