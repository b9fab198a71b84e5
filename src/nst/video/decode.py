"""Video in with PyAV (FFmpeg bundled, works offline): what counts as a video, and decoding a clip (a file, a
folder or a glob of frames) at the stylization size. video/encode.py writes videos.

Everything that can be wrong with a clip is found in `read_clip`, before any output exists, and is one line
(VideoError): no such file, not a video, no video stream, corrupt or truncated, zero frames, too large. A clip
of variable frame rate is encoded at its average rate with every frame kept (metrics.json says so); rotation
metadata is applied to the pixels; odd sizes become even (H.264 in yuv420p needs even sides) by the choice of
the stylization size, never by padding.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator, Optional

import numpy as np
from PIL import Image

from ..errors import ImageError, first_line
from ..images import MIN_SIDE, fit_size, open_rgb

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class VideoError(ImageError):
    """A video (or folder of frames) is missing, unreadable or unusable: one line, exit status 2."""


def is_pattern(path: str) -> bool:
    """Whether `path` is a glob: it has *, ? or [ and no file or folder has that very name (an existing file is
    always that file, `photo[1].jpg` included)."""
    return glob.has_magic(path) and not os.path.lexists(path)


def natural_key(path: str) -> list:
    """Sort key of frame names in numeric order: frame2 before frame10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def frame_files(path: str) -> list[str]:
    """The image files of a folder, or the files a glob matches, in natural order."""
    if os.path.isdir(path):
        files = [os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        files = [p for p in glob.glob(path) if os.path.isfile(p)]
    return sorted(files, key=natural_key)


def is_video(content: str) -> bool:
    """Whether data.content is a clip: a video file (an animated GIF, not a still one), a folder or a glob."""
    if is_pattern(content):
        return True
    if os.path.isdir(content):  # a folder of frames (an empty one is an image run's "is a directory" error)
        return any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(content))
    ext = os.path.splitext(content)[1].lower()
    if ext == ".gif":
        try:
            with Image.open(content) as im:
                return getattr(im, "n_frames", 1) > 1
        except Exception:
            return False  # open_rgb reports it
    return ext in VIDEO_EXTENSIONS


def count_frames(path: str, start: int = 0, max_frames: int = 0) -> int:
    """How many frames read_clip(path, ..., start, max_frames) gives, without decoding (a file's video packets, a
    folder's images); a VideoError for what read_clip would refuse too."""
    if is_pattern(path) or os.path.isdir(path):
        total = len(frame_files(path))
    else:
        import av
        try:
            with av.open(path) as c:
                total = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        except Exception as e:
            raise VideoError(f"{path}: cannot count its frames ({first_line(e, 120)})") from None
    left = max(0, total - start)
    return min(left, max_frames) if max_frames else left


def frame_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) of the stylized frames: the longest side `longest`, both sides even (yuv420p), the aspect
    kept to within a pixel."""
    w, h = fit_size(size, longest)
    return max(2, w - w % 2), max(2, h - h % 2)


class Frames(Sequence):
    """A clip's frames at the stylization size, decoded when asked for: memory does not grow with the clip's
    length. The last KEEP frames asked for are kept; frames asked for in order (the frame loop, the final
    encode) are decoded once each, by one pass of `decode(t)` (an iterator of frames t, t+1, ... ), restarted
    only to go back further than what is kept."""
    KEEP = 16  # more than any video.long_term distance the frame loop looks back (flows t -> t-j)

    def __init__(self, n: int, decode: Callable[[int], Iterator[Image.Image]], first: Image.Image):
        self.n, self.decode = n, decode
        self.kept: OrderedDict[int, Image.Image] = OrderedDict([(0, first)])
        self.position, self.pass_ = 0, None  # the next frame the running pass gives

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(self.n))]
        t = t + self.n if t < 0 else t
        if not 0 <= t < self.n:
            raise IndexError(t)
        if t in self.kept:
            self.kept.move_to_end(t)
            return self.kept[t]
        if self.pass_ is None or t < self.position:
            self.pass_, self.position = self.decode(t), t
        for im in self.pass_:
            self._keep(self.position, im)
            self.position += 1
            if self.position > t:
                return im
        raise VideoError(f"frame {t + 1} of {self.n} cannot be decoded again (the file changed since it was read)")

    def _keep(self, t: int, im: Image.Image) -> None:
        self.kept[t] = im
        self.kept.move_to_end(t)
        while len(self.kept) > self.KEEP:
            self.kept.popitem(last=False)


@dataclass
class Clip:
    """A clip read and checked: its frames at the stylization size (decoded when used) and what encoding needs to
    match the input."""
    source: str
    frames: Sequence[Image.Image]  # RGB, `size`: a Frames, or any list
    fps: Fraction
    original_size: tuple[int, int]  # (w, h) as displayed (rotation applied)
    start: int  # index of the first frame used in the source
    start_time: float = 0.0  # seconds from the source's start to the first frame used (audio is cut from there)
    audio: bool = False  # the source has an audio stream (a file only)
    variable_rate: bool = False
    rotation: int = 0
    notes: list[str] = field(default_factory=list)
    digest: str = ""  # of every frame as decoded at `size` (a resume checks it: video/resume.py)

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].size

    @property
    def duration(self) -> float:
        return len(self.frames) / float(self.fps)


def _rotated(im: Image.Image, degrees: int) -> Image.Image:
    """The frame as displayed: FFmpeg's display rotation is counter-clockwise, like PIL's rotate."""
    return im.rotate(degrees, expand=True) if degrees % 360 else im


def read_clip(path: str, longest: int, start: int = 0, max_frames: int = 0, fps: float = 25.0,
              max_pixels: Optional[int] = None) -> Clip:
    """Frames start .. start+max_frames-1 (max_frames=0: to the end) of a video file, folder or glob of images,
    resized so that the longest side is `longest` (both sides even)."""
    max_pixels = max_pixels or Image.MAX_IMAGE_PIXELS
    if is_pattern(path) or os.path.isdir(path):
        clip = _read_frames(path, longest, start, max_frames, fps)
    else:
        clip = _read_file(path, longest, start, max_frames, max_pixels)
    w, h = clip.size
    if min(w, h) < MIN_SIDE:
        raise VideoError(f"{path}: frames of {clip.original_size[0]}x{clip.original_size[1]} become {w}x{h} at "
                         f"data.size={longest}, too small for VGG19 (each side needs at least {MIN_SIDE} px)")
    return clip


def _read_frames(path: str, longest: int, start: int, max_frames: int, fps: float) -> Clip:
    files = frame_files(path)
    if not files:
        raise VideoError(f"{path}: no frames (no {', '.join(IMAGE_EXTENSIONS)} files)")
    used = files[start:start + max_frames] if max_frames else files[start:]
    if not used:
        raise VideoError(f"{path}: video.start={start} is past the last of its {len(files)} frames")
    first = open_rgb(used[0])
    size = frame_size(first.size, longest)
    digest = hashlib.sha256()
    resized = None
    for p in used:  # every frame checked (and digested) now, none kept
        im = open_rgb(p)
        if im.size != first.size:
            raise VideoError(f"{p}: {im.size[0]}x{im.size[1]}, but the first frame is {first.size[0]}x{first.size[1]}"
                             f" (every frame of a folder or glob needs one size)")
        im = im.resize(size, Image.Resampling.LANCZOS)
        digest.update(im.tobytes())
        resized = resized or im

    def decode(t: int) -> Iterator[Image.Image]:
        return (open_rgb(p).resize(size, Image.Resampling.LANCZOS) for p in used[t:])
    return Clip(path, Frames(len(used), decode, resized), Fraction(fps).limit_denominator(1001), first.size, start,
                start / fps, digest=digest.hexdigest()[:16])


def _read_file(path: str, longest: int, start: int, max_frames: int, max_pixels: int) -> Clip:
    import av

    try:
        mode = os.stat(path).st_mode
    except OSError as e:  # ENOENT, ELOOP (a symbolic link loop), EACCES on a folder above it...
        why = "no such file" if e.errno == errno.ENOENT else (e.strerror or str(e)).lower()
        raise VideoError(f"{path}: {why}") from None
    if not stat.S_ISREG(mode):
        raise VideoError(f"{path}: not a regular file (a FIFO, socket or device), not a video file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except Exception as e:
        raise VideoError(f"{path}: not a video file, or corrupt or truncated ({first_line(e, 160)})") from None
    with container:
        if not container.streams:
            raise VideoError(f"{path}: no frames (the file holds no streams)")
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise VideoError(f"{path}: no video stream ({kinds})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate) if rate else Fraction(25)
        promised = stream.frames  # 0 when the container does not say
        first = None
        digest = hashlib.sha256()
        times: list[float] = []
        decoded = 0
        size = original = None
        rotation = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded <= start:
                    continue
                if max_frames and len(times) >= max_frames:
                    break
                if frame.width * frame.height > max_pixels:
                    raise VideoError(f"{path}: frames of {frame.width}x{frame.height} are too large to decode safely "
                                     f"(more than {max_pixels} pixels)")
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                im = _rotated(frame.to_image(), rotation)
                if size is None:
                    original = im.size
                    size = frame_size(im.size, longest)
                im = im.resize(size, Image.Resampling.LANCZOS) if im.size != size else im
                digest.update(im.tobytes())  # every frame checked (and digested) now, none kept but the first
                first = first or im
                times.append(float(frame.time) if frame.time is not None else (decoded - 1) / float(fps))
        except VideoError:
            raise
        except Exception as e:  # av.error.InvalidDataError and friends on bad bytes
            raise VideoError(f"{path}: corrupt or truncated video (decoding stopped after {decoded} frames: "
                             f"{first_line(e, 120)})") from None
        if decoded == 0:
            raise VideoError(f"{path}: no frames could be decoded (zero frames, or corrupt or truncated)")
        if not times:
            raise VideoError(f"{path}: video.start={start} is past the last of its {decoded} frames")
        ended = not (max_frames and len(times) >= max_frames)  # decoded to the end of the file, not cut short
        if promised and ended and decoded < 0.9 * promised:
            raise VideoError(f"{path}: truncated video (the header promises {promised} frames, {decoded} decode)")
        has_audio = bool(container.streams.audio)
    frames = Frames(len(times), lambda t: _decode_file(path, start + t, start + len(times), size), first)
    clip = Clip(path, frames, fps, original, start, times[0] - (float(stream.start_time * stream.time_base)
                                                                  if stream.start_time else 0.0),
                audio=has_audio, rotation=rotation, digest=digest.hexdigest()[:16])
    steps = np.diff(times) if len(times) > 2 else np.zeros(0)
    if steps.size and (steps.max() - steps.min()) > 0.5 / float(fps):
        clip.variable_rate = True
        clip.notes.append(f"variable frame rate ({1 / steps.max():.3g}..{1 / max(steps.min(), 1e-6):.3g} fps): "
                          f"encoded at its average {float(fps):.3g} fps, every frame kept")
    if rotation:
        clip.notes.append(f"rotation metadata {rotation} degrees applied to the pixels")
    if original and (original[0] % 2 or original[1] % 2):
        clip.notes.append(f"odd frame size {original[0]}x{original[1]}: stylized at {size[0]}x{size[1]}")
    return clip


def _decode_file(path: str, begin: int, end: int, size: tuple[int, int]) -> Iterator[Image.Image]:
    """Frames begin..end-1 of a file read_clip has checked, as it gave them (rotated, at `size`)."""
    import av
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for k, frame in enumerate(container.decode(stream)):
            if k >= end:
                return
            if k >= begin:
                im = _rotated(frame.to_image(), int(round(getattr(frame, "rotation", 0) or 0)) % 360)
                yield im.resize(size, Image.Resampling.LANCZOS) if im.size != size else im
