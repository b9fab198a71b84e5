"""Python API over the same code as the command line."""

from __future__ import annotations

import tempfile
from typing import Any

from PIL import Image

from .config import load_config
from .runner.loop import quiet_device_lines
from .runner.run import run


def stylize(content: str, style: str | list[str], config: str | None = None, **overrides: Any) -> Image.Image:
    """Stylize `content` after `style`; overrides use the config's dotted keys with `__` for dots.

    >>> stylize("assets/tubingen.jpg", "assets/starry_night.jpg", data__size=256, trainer__max_steps=100)

    The overrides are Python values merged as a config layer (None is null, lists stay lists), not strings.
    """
    base: dict[str, Any] = {"data": {"content": content, "style": style}, "logger": {"mode": "disabled"}}
    for key, value in overrides.items():
        *sections, last = key.split("__")
        node = base
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = value
    quiet_device_lines()
    if "output__dir" in overrides:
        return run(load_config(config, base=base)).image
    with tempfile.TemporaryDirectory(prefix="nst-") as folder:  # the outputs are not asked for: nothing stays
        base.setdefault("output", {})["dir"] = folder
        return run(load_config(config, base=base)).image
