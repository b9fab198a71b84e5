"""Reading images (any mode, EXIF orientation, clear errors), resizing, and PIL <-> tensor conversion."""

from __future__ import annotations

import errno
import os
import stat
import warnings

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, first_line

MIN_SIDE = 16  # VGG19 pools 4 times before conv5_1: smaller sides leave nothing to compare


def open_rgb(path: str) -> Image.Image:
    """Open an image file as 8-bit RGB: EXIF orientation applied, alpha composited on white, 16-bit scaled."""
    check_file(path)
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # damaged metadata: the file decodes or is one error
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image too large to load safely: more than {Image.MAX_IMAGE_PIXELS} pixels "
                         f"(Pillow's decompression-bomb guard; shrink the image first)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except PermissionError:
        raise ImageError(f"{path}: cannot read it (permission denied)") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except Exception as e:  # whatever a decoder raises on bad bytes (OSError, SyntaxError, struct.error, ...)
        raise ImageError(f"{path}: corrupt or truncated image ({first_line(e, 160)})") from None


def check_file(path: str) -> None:
    """An ImageError unless `path` is a regular file (through its symlinks): what it is instead. A FIFO or a
    device is never opened: reading one would wait for a writer forever."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{path}: symbolic link loop (a link that leads back to itself)") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise ImageError(f"{path}: broken symbolic link (to {os.readlink(path)}, which does not exist)") from None
        if e.errno == errno.ENOENT:
            raise ImageError(f"{path}: no such file") from None
        raise ImageError(f"{path}: cannot read it ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise ImageError(f"{path}: is {kind}, not an image file")


def oriented_size(path: str) -> tuple[int, int]:
    """(width, height) of the image open_rgb would return (EXIF orientation applied), from the header alone."""
    check_file(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception as e:  # whatever open_rgb would report in detail
        raise ImageError(f"{path}: cannot read the image ({first_line(e, 160)})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # the orientations that turn the image a quarter


def to_rgb(im: Image.Image) -> Image.Image:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit single channel: scale to 0..255 before the 8-bit conversion (PIL clips otherwise).
        scale = 1 / 257 if im.mode.startswith("I;16") or im.getextrema()[1] > 255 else 1
        if im.mode == "F":
            scale = 255.0 if im.getextrema()[1] <= 1.0 else 1.0
        im = im.point(lambda v: v * scale, "F").convert("L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(canvas, rgba)
    return im.convert("RGB")


def fit_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is `longest`, aspect ratio kept."""
    w, h = size
    if w >= h:
        return longest, max(1, round(h * longest / w))
    return max(1, round(w * longest / h)), longest


def style_side(output_side: int, style_scale: float) -> int:
    """The style image's longest side for an output's longest side (never below MIN_SIDE)."""
    return max(MIN_SIDE, round(output_side * style_scale))


def resize_longest(im: Image.Image, longest: int, what: str = "image") -> Image.Image:
    w, h = fit_size(im.size, longest)
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{what}: {im.size[0]}x{im.size[1]} resized to {w}x{h} is too small for VGG19 "
                         f"(each side needs at least {MIN_SIDE} px; raise data.size)")
    return im.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != im.size else im


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor [1, 3, H, W] in [0, 1], contiguous NCHW."""
    data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(im.size[1], im.size[0], 3).permute(2, 0, 1).unsqueeze(0).float().div(255).contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    """Float tensor [1, 3, H, W] (or [3, H, W]) in [0, 1] -> PIL RGB, clamped and rounded."""
    x = image.detach().float().cpu()
    if x.dim() == 4:
        x = x[0]
    arr = x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(arr, "RGB")
