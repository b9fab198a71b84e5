"""Image files that are wrong in every way a user meets: missing, empty, truncated, corrupt, a decompression bomb."""

from __future__ import annotations

import io
import os
import struct
import zlib

import torch
from PIL import Image

from helpers import CONTENT


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size in its header (a decompression bomb costs nothing to make)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def noise_png(size=(64, 48), mode="RGB") -> bytes:
    gen = torch.Generator().manual_seed(1)
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=gen, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(noise_png())
    start = data.index(b"IDAT") + 4
    for i in range(start + 20, start + 60):
        data[i] ^= 0x5A  # the chunk's CRC no longer matches
    return bytes(data)


def make_bad(tmp_path, kind: str) -> tuple[str, list[str]]:
    """A bad content file and the words its error must contain."""
    path = tmp_path / f"bad-{kind}"
    if kind == "missing":
        return str(path) + ".jpg", ["no such file"]
    if kind == "directory":
        path.mkdir()
        return str(path), ["is a directory"]
    if kind == "not_an_image":
        path.write_text("name,score\nada,1\n")
        return str(path), ["not an image file"]
    if kind == "fifo":
        os.mkfifo(path)
        return str(path), ["is a FIFO (named pipe), not an image file"]
    if kind == "symlink_loop":
        os.symlink(path, path)
        return str(path), ["symbolic link loop"]
    if kind == "broken_symlink":
        os.symlink(tmp_path / "gone.jpg", path)
        return str(path), ["broken symbolic link", "gone.jpg"]
    if kind == "zero_bytes":
        path.write_bytes(b"")
        return str(path), ["empty file"]
    if kind == "truncated_jpeg":
        data = open(CONTENT, "rb").read()
        path.write_bytes(data[: len(data) // 3])
        return str(path), ["corrupt or truncated"]
    if kind == "truncated_png":
        data = noise_png()
        path.write_bytes(data[: len(data) // 2])
        return str(path), ["corrupt or truncated"]
    if kind == "corrupt_png":
        path.write_bytes(corrupt_png())
        return str(path), ["corrupt or truncated"]
    if kind == "bomb":
        path.write_bytes(png_header_only(100_000, 100_000))
        return str(path), ["too large to load safely", str(Image.MAX_IMAGE_PIXELS)]
    raise ValueError(kind)


BAD_FILES = ["missing", "directory", "fifo", "symlink_loop", "broken_symlink", "not_an_image", "zero_bytes", "truncated_jpeg", "truncated_png", "corrupt_png",
             "bomb"]
