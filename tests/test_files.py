"""Atomic writes (nst.files): an interrupted or failed write leaves the old file whole and no temporary file."""

from __future__ import annotations

import errno
import os

import pytest
from PIL import Image

from helpers.train import leftovers
from nst.errors import OutputError
from nst.files import atomic_write, save_json, save_png, save_text


def test_interrupted_writes_leave_the_old_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    save_json({"loss": 1.0}, str(path))
    old = path.read_bytes()

    def half_then(exc):
        def write(f):
            f.write(b'{"loss": 0.')
            raise exc
        return write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), half_then(KeyboardInterrupt()))
    with pytest.raises(OutputError, match=r"cannot write .*metrics.json \(No space left on device\)"):
        atomic_write(str(path), half_then(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert path.read_bytes() == old and not leftovers(tmp_path)

    save_png(Image.new("RGB", (4, 4)), str(tmp_path / "a.png"))
    save_text("a: 1\n", str(tmp_path / "c.yaml"))
    assert oct(os.stat(tmp_path / "a.png").st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
