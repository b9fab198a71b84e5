"""Python API over the same code as the command line."""

from __future__ import annotations

import tempfile
from typing import Any

from PIL import Image

from .config import load_config
from .runner.run import run


def stylize(content: str, style: str | list[str], config: str | None = None, **overrides: Any) -> Image.Image:
    """Stylize `content` after `style`; overrides use the config's dotted keys with `__` for dots.

    >>> stylize("assets/tubingen.jpg", "assets/starry_night.jpg", data__size=256, trainer__max_steps=100)
    """
    base: dict[str, Any] = {"data": {"content": content, "style": style}}
    dotted = [f"{k.replace('__', '.')}={_yaml(v)}" for k, v in overrides.items()]
    if not any(k.startswith("output__dir") for k in overrides):
        dotted.append(f"output.dir={tempfile.mkdtemp(prefix='nst-')}")
    if not any(k.startswith("logger__mode") for k in overrides):
        dotted.append("logger.mode=disabled")
    return run(load_config(config, dotted, base=base)).image


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return str(value)
