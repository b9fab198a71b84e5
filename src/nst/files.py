"""Atomic file writes: every output appears whole at its path or not at all (a temporary file, then a rename)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any, Callable, Iterator

from PIL import Image

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


@contextlib.contextmanager
def replaced_atomically(path: str) -> Iterator[str]:
    """A temporary file beside `path` to write to; on success it is synced and renamed over `path`.

    Readers never see half a file. A failed write (disk full, no permission) leaves no temporary file and
    raises OutputError naming `path`; any other failure inside the block leaves no temporary file either.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str, write: Callable[[Any], None], binary: bool = True) -> None:
    """`write(f)` to an open file that appears at `path` whole or not at all (see replaced_atomically)."""
    with replaced_atomically(path) as tmp:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, FILE_MODE)


def save_png(image: Image.Image, path: str) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def save_text(text: str, path: str) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False)


def save_json(data: dict, path: str) -> None:
    save_text(json.dumps(data, indent=2, sort_keys=True) + "\n", path)


def remove_leftovers(folder: str) -> list[str]:
    """Delete the temporary files of writes that never finished (a process killed outright in the middle of one).
    Only for a folder this process owns: another writer's temporary file looks the same."""
    removed = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def say_replaced(folder: str, names: tuple[str, ...]) -> list[str]:
    """Before a fresh run (not a resume) writes into `folder`: one line on stderr naming the outputs of an earlier
    run there that it replaces (names may be globs: step_*.png), so that a rerun never overwrites silently."""
    import glob
    import sys
    found = [name for name in names if glob.glob(os.path.join(glob.escape(folder), name))]
    if found:
        print(f"{folder}: replacing {', '.join(found)} of an earlier run (resume=true continues an unfinished run "
              f"instead; another output.dir keeps them)", file=sys.stderr, flush=True)
    return found
