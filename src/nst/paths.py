"""Where the input paths of a config point: a relative path in a config file is relative to that file (where it
exists there), and the showcase images (assets/*.jpg) are found wherever nst is installed."""

from __future__ import annotations

import glob
import os
import site
import sys
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig

ASSETS = "assets"


def asset_dirs() -> list[str]:
    """The checkout's assets/, then the copies pip installed (share/nst/assets under the environment)."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.normpath(os.path.join(here, "..", "..", ASSETS)),
            os.path.join(sys.prefix, "share", "nst", ASSETS)]
    try:
        dirs.append(os.path.join(site.getuserbase(), "share", "nst", ASSETS))
    except Exception:  # site without a user base (embedded interpreters)
        pass
    return dirs


def shipped(path: str) -> Optional[str]:
    """assets/<name> that is not in the working directory: the copy shipped with nst, if there is one."""
    parts = os.path.normpath(path).split(os.sep)
    if os.path.isabs(path) or len(parts) != 2 or parts[0] != ASSETS or os.path.exists(path):
        return None
    return next((os.path.join(d, parts[1]) for d in asset_dirs() if os.path.isfile(os.path.join(d, parts[1]))),
                None)


def _relative_to(folder: Optional[str], path: Any) -> Any:
    if not isinstance(path, str) or not path or os.path.isabs(path) or "://" in path:
        return path
    if folder and os.path.abspath(folder) != os.getcwd():
        candidate = os.path.join(folder, path)
        if glob.glob(candidate) or os.path.exists(candidate):
            return candidate
    return shipped(path) or path


def _each(value: Any, folder: Optional[str]) -> Any:
    if isinstance(value, (list, ListConfig)):
        return [_each(v, folder) for v in value]
    if isinstance(value, (dict, DictConfig)):  # {content: ..., style: ...} pairs
        return {k: _each(v, folder) for k, v in value.items()}
    return _relative_to(folder, value)


def resolve_inputs(layer: DictConfig, folder: Optional[str], names: dict[str, tuple[str, ...]]) -> None:
    """In a config layer (a file's, with `folder` its folder, or the defaults', with None): the input paths
    that exist relative to the file's folder, rewritten to point there; assets/<name> missing from the working
    directory, to the shipped copy. Paths that exist as given are left as they are, and so are the values in
    `names` (key -> the values that name something, not a file: model.weights=caffe)."""
    for section, key in (("data", "content"), ("data", "style"), ("sweep", "contents"), ("sweep", "styles"),
                         ("sweep", "pairs"), ("model", "weights"), (None, "init"),
                         ("masks", "content"), ("masks", "style")):
        node = layer.get(section) if section else layer
        if not isinstance(node, DictConfig) or key not in node or node[key] is None:
            continue
        if node[key] in names.get(key, ()):
            continue
        node[key] = _each(node[key], folder)
