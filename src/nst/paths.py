"""Where the input paths of a config point: a relative path in a config file is relative to that file (where it
exists there), and the showcase images (assets/*.jpg) are found wherever nst is installed; so are the example
configs (configs/*.yaml), by name: `nst --config starry`."""

from __future__ import annotations

import glob
import os
import re
import site
import sys
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig

ASSETS = "assets"
CONFIGS = "configs"


def stem(path: str) -> str:
    """A file's name without its suffix, as a safe name for folders, W&B names and tags: tubingen.jpg -> tubingen."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"


def asset_dirs(kind: str = ASSETS) -> list[str]:
    """The checkout's assets/ (or configs/), then the copies pip installed (share/nst/<kind> under the
    environment)."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [os.path.normpath(os.path.join(here, "..", "..", kind)),
            os.path.join(sys.prefix, "share", "nst", kind)]
    try:
        dirs.append(os.path.join(site.getuserbase(), "share", "nst", kind))
    except Exception:  # site without a user base (embedded interpreters)
        pass
    return dirs


def example_configs() -> dict[str, str]:
    """The example configs that come with nst: name (starry) -> path, the checkout's first."""
    found: dict[str, str] = {}
    for folder in asset_dirs(CONFIGS):
        for path in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
            found.setdefault(os.path.splitext(os.path.basename(path))[0], path)
    return found


def named_config(name: str) -> Optional[str]:
    """--config NAME that is not a file: the example config of that name (starry, starry.yaml), if there is one."""
    if os.path.exists(name) or os.sep in name:
        return None
    return example_configs().get(name[:-5] if name.endswith(".yaml") else name)


def config_list() -> str:
    """`  name  path  what it is` for each example config, what it is from the config's first comment line."""
    lines = []
    for name, path in example_configs().items():
        words = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.startswith("# ") or line.startswith("#  "):  # the description, not its commands
                    break
                words.append(line[2:].strip())
        what = " ".join(words).split(". ")[0].rstrip(".")
        lines.append(f"  {name:<13}{what[:100] + '...' if len(what) > 100 else what}")
    return "\n".join(lines)


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
