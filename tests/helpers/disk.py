"""A small disk that can be filled up: a tmpfs mounted for one test (root only; skipped where mounting is not
allowed), to check what a run does when a write fails for want of space."""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Iterator

import pytest


@contextlib.contextmanager
def small_disk(folder, size: str = "200k") -> Iterator[str]:
    """A tmpfs of `size` mounted at `folder` (created) for the length of the block, unmounted after."""
    os.makedirs(folder, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def free_bytes(folder) -> int:
    s = os.statvfs(folder)
    return s.f_bavail * s.f_frsize


def fill(folder, leave: int) -> None:
    """Take all but `leave` bytes of the disk that holds `folder`, with one file."""
    with open(os.path.join(folder, "filler"), "wb") as f:
        f.write(b"\0" * max(0, free_bytes(folder) - leave))
