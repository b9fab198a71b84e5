"""Whether a run tiles its evaluations (tiling.* keys; model/tiling.py), and the memory it needs either way.

`tiling.enabled=auto` tiles a scale only when the estimate of runner/memory.py says its whole evaluation would not
fit in the memory the device has free (the machine's, on the CPU): smaller scales stay whole. `true` tiles every
scale larger than one block; `false` never tiles.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from omegaconf import DictConfig, ListConfig

from ..config import layers_of
from ..images import style_side
from ..model.tiling import Tiling, auto_margin, plan
from . import memory
from .hardware import resolve_accelerator, resolve_precision


def _settings(cfg: DictConfig) -> tuple[str, int, Optional[int], str]:
    """(precision, history units, available bytes, where) of this config's device."""
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    devices = cfg.trainer.devices
    index = int(devices[0]) if isinstance(devices, ListConfig) else 0
    available, where = memory.device_memory_bytes(accelerator, index)
    precision = resolve_precision(str(cfg.trainer.precision), accelerator)
    return precision, memory.history_units(cfg.optim.name, cfg.optim.history), available, where


def needed_bytes(cfg: DictConfig, pictures: int, h: int, w: int, tiling: Optional[Tiling] = None) -> int:
    """The estimated peak of `pictures` pictures of h x w, whole (memory.batch_bytes, the estimate
    `sweep.batch=auto` fills a GPU with) or (when `tiling` cuts it) block by block."""
    precision, history, *_ = _settings(cfg)
    blocks = tiling.blocks(h, w) if tiling is not None else None
    if not blocks:
        return memory.batch_bytes(pictures, h * w, style_side(cfg.data.size, cfg.data.style_scale) ** 2, precision,
                                  history)
    style_px = style_side(max(h, w), cfg.data.style_scale) ** 2 // 2
    y0, y1, x0, x1 = max((b.outer for b in blocks), key=lambda o: (o[1] - o[0]) * (o[3] - o[2]))
    outer = (y1 - y0) * (x1 - x0)
    if style_px > outer:  # the style image too is seen block by block
        outer = max(outer, max((b.outer[1] - b.outer[0]) * (b.outer[3] - b.outer[2]) for b in plan(
            style_side(max(h, w), cfg.data.style_scale), style_side(max(h, w), cfg.data.style_scale),
            tiling.block, tiling.margin)))
    return memory.FIXED_BYTES + pictures * memory.tiled_bytes_per_picture(h * w, outer, precision, history)


def tiling_of(cfg: DictConfig) -> Optional[Tiling]:
    """The blocks and margin a run of `cfg` tiles with where it tiles; None where it never does."""
    t = cfg.tiling
    if t.enabled is False or cfg.masks.content:  # guided Grams are not tiled (config.py refuses tiling=true there)
        return None
    content, style = layers_of(cfg)
    margin = auto_margin(content + style) if t.margin == "auto" else int(t.margin)
    return Tiling(t.block, margin, t.exact)


def choose(cfg: DictConfig, sizes: list[tuple[int, int]], pictures: int = 1) -> Optional[Tiling]:
    """The Tiling of a batch of `pictures` with these (h, w) scales, or None: every evaluation whole."""
    tiling = tiling_of(cfg)
    if tiling is None or cfg.tiling.enabled is True:
        return tiling
    available = _settings(cfg)[2]
    if available is None:
        return None
    over = [h * w for h, w in sizes if needed_bytes(cfg, pictures, h, w) > available]
    return replace(tiling, from_pixels=min(over)) if over else None


def tiled_pictures_that_fit(cfg: DictConfig, h: int, w: int, budget: int, most: int) -> int:
    """How many h x w pictures fit in `budget` bytes evaluated block by block, a block of each in one VGG call
    (`sweep.batch=auto` where not even two fit whole); 0 where the run would not tile or not even one fits."""
    tiling = tiling_of(cfg)
    if tiling is None or not tiling.blocks(h, w):
        return 0
    each = needed_bytes(cfg, 1, h, w, tiling) - memory.FIXED_BYTES  # the tiled estimate grows by this per picture
    return max(0, min(most, (budget - memory.FIXED_BYTES) // each))


def describe(tiling: Optional[Tiling], sizes: list[tuple[int, int]]) -> Optional[str]:
    """One line for the log: how many blocks an evaluation takes at each tiled scale."""
    if tiling is None:
        return None
    tiled = [(h, w, len(tiling.blocks(h, w))) for h, w in sizes if tiling.blocks(h, w)]
    if not tiled:
        return None
    scales = ", ".join(f"{n} blocks at {w}x{h}" for h, w, n in tiled)
    return f"tiling: {scales} (block {tiling.block} px, margin {tiling.margin} px, exact={tiling.exact})"


def check_memory(cfg: DictConfig, jobs: list) -> None:
    """memory.TooLarge (a ConfigError), before anything is allocated (jobs: runner/job.py's, of one size), when the
    batch would need more memory than its device has free (the machine's, on the CPU) even tiled where tiling may
    cut it; trainer.check_memory=false skips it. Untiled, the estimate is the one `sweep.batch=auto` fills a GPU
    with (memory.batch_bytes)."""
    if not cfg.trainer.check_memory:
        return
    precision, _, available, where = _settings(cfg)
    if available is None:
        return
    h, w = max(jobs[0].sizes(), key=lambda hw: hw[0] * hw[1])  # the largest scale
    tiling = choose(cfg, list(jobs[0].sizes()), len(jobs))
    needed = needed_bytes(cfg, len(jobs), h, w, tiling)  # block by block when tiled
    if needed > available:
        tiled = " even tiled" if tiling is not None and tiling.blocks(h, w) else ""
        raise memory.TooLarge(f"data.size: a {w}x{h} picture{'s' * (len(jobs) > 1)} (x{len(jobs)}) needs about "
                              f"{memory.describe(needed)} in {precision}{tiled}, more than the "
                              f"{memory.describe(available)} {where} (lower data.size or optim.history, "
                              f"{'tiling.block' if tiled else 'or set tiling.enabled=true'}, or set "
                              f"trainer.check_memory=false to try anyway)")
