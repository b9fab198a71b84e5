"""Loading, merging overrides and validation of a config; its schema (every default, in one place) is schema.py.

A config is the schema's defaults, then a YAML file, then `key=value` overrides, merged by OmegaConf. A key
that is not in the schema or a value of the wrong type is an error naming the full key.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, first_line
from .model.layers import LAYERS, NAMED_SOURCES, looks_like_path
from .model.schedule import scale_sizes as sizes_of_scales, steps_per_scale as steps_of_scales
from .paths import named_config, resolve_inputs
from .schema import (COLOR_MODES, INITS, INT_LIMIT, LOGGER_MODES, MAX_FPS, MIN_FPS, NAMED, OPTIMIZERS, PRECISIONS,
                     PRESETS, REMOVED, Config)


def _naming_the_key(e: OmegaConfBaseException) -> str:
    """OmegaConf's message, led by the full key it is about."""
    msg = first_line(e)
    key = getattr(e, "full_key", None)
    return f"{key}: {msg}" if key and not msg.startswith(str(key)) else msg


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a bare string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    return f"a single value ({str(value)[:40]!r})"


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None,
                base: Any = None) -> DictConfig:
    """Schema defaults <- YAML file <- (optional base dict) <- key=value overrides, then validated."""
    layers = [OmegaConf.structured(Config)]
    try:
        if path is not None:
            if not os.path.isfile(path):
                path = named_config(path) or path
            if not os.path.isfile(path):
                raise ConfigError(f"config file not found: {path} (nst --list-configs: the example configs)")
            with open(path) as f:
                top = yaml.safe_load(f)
            if top is not None and not isinstance(top, dict):  # OmegaConf reads a bare string as a key
                raise ConfigError(f"{path}: a config file must be a mapping of keys (key: value lines), "
                                  f"this one holds {_kind(top)}")
            loaded = OmegaConf.load(path)
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"{path}: a config file must be a mapping of keys")
            resolve_inputs(loaded, os.path.dirname(path), NAMED)  # its relative input paths are relative to it
            layers.append(loaded)
        if base is not None:
            layers.append(OmegaConf.create(base))
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not key=value")
        layers.append(OmegaConf.from_dotlist(list(overrides or [])))
        for layer in layers[1:]:
            for key, instead in REMOVED.items():
                if OmegaConf.select(layer, key, default=None) is not None:
                    raise ConfigError(f"{key}: this key was removed; use {instead}")
        cfg = OmegaConf.merge(*layers)
        OmegaConf.resolve(cfg)
        resolve_inputs(cfg, None, NAMED)  # assets/*.jpg from anywhere: the copies installed with nst
    except OmegaConfBaseException as e:
        raise ConfigError(_naming_the_key(e)) from None
    except ConfigError:
        raise
    except Exception as e:  # YAML syntax errors and the like
        raise ConfigError(f"{path}: {first_line(e)}") from None
    validate(cfg)
    return cfg


def style_paths(cfg: DictConfig) -> list[str]:
    style = cfg.data.style
    if isinstance(style, str):
        return [style]
    if isinstance(style, (list, ListConfig)) and style and all(isinstance(s, str) for s in style):
        return list(style)
    raise ConfigError("data.style: expected a path or a non-empty list of paths")


def layers_of(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Content and style layers: the preset's, each list overridable on its own."""
    preset = PRESETS[cfg.model.preset]
    content = list(cfg.model.content_layers) if cfg.model.content_layers is not None else preset["content_layers"]
    style = list(cfg.model.style_layers) if cfg.model.style_layers is not None else preset["style_layers"]
    return content, style


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: unknown value '{value}' (choose {', '.join(map(str, choices))})")


def validate(cfg: DictConfig) -> None:
    """Checks what types alone cannot: choices, ranges, layer names, list lengths."""
    bounded_integers(cfg)
    if cfg.data.size <= 0:
        raise ConfigError(f"data.size: must be a positive number of pixels, got {cfg.data.size}")
    if cfg.data.style_scale <= 0:
        raise ConfigError(f"data.style_scale: must be positive, got {cfg.data.style_scale}")
    styles = style_paths(cfg)
    if cfg.data.style_weights is not None:
        sw = list(cfg.data.style_weights)
        if len(sw) != len(styles):
            raise ConfigError(f"data.style_weights: {len(sw)} weights for {len(styles)} styles")
        if any(w < 0 for w in sw) or sum(sw) <= 0:
            raise ConfigError("data.style_weights: weights must be >= 0 and not all 0")
    _choice("model.preset", cfg.model.preset, tuple(PRESETS))
    _choice("model.pooling", cfg.model.pooling, ("max", "avg"))
    if cfg.model.weights not in NAMED_SOURCES and not looks_like_path(cfg.model.weights):
        raise ConfigError(f"model.weights: unknown weights '{cfg.model.weights}' "
                          f"(choose caffe, torchvision, random or a path to a .pth file)")
    content, style = layers_of(cfg)
    for key, names in (("model.content_layers", content), ("model.style_layers", style)):
        if not names:
            raise ConfigError(f"{key}: needs at least one layer")
        for name in names:
            if name not in LAYERS:
                raise ConfigError(f"{key}: unknown layer '{name}' (known: conv1_1 .. conv5_4, e.g. conv4_2)")
    if cfg.model.style_layer_weights is not None:
        lw = list(cfg.model.style_layer_weights)
        if len(lw) != len(style):
            raise ConfigError(f"model.style_layer_weights: {len(lw)} weights for {len(style)} style layers")
        if any(w < 0 for w in lw):
            raise ConfigError("model.style_layer_weights: weights must be >= 0")
    for key in ("content_weight", "style_weight", "tv_weight"):
        if not cfg.loss[key] >= 0 or math.isinf(cfg.loss[key]):  # also NaN and inf
            raise ConfigError(f"loss.{key}: must be >= 0 and finite, got {cfg.loss[key]}")
    _choice("optim.name", cfg.optim.name, OPTIMIZERS)
    if not cfg.optim.lr > 0 or math.isinf(cfg.optim.lr):
        raise ConfigError(f"optim.lr: must be positive and finite, got {cfg.optim.lr}")
    if cfg.optim.history < 1:
        raise ConfigError(f"optim.history: must be >= 1, got {cfg.optim.history}")
    if cfg.optim.line_search_evals < 1:
        raise ConfigError(f"optim.line_search_evals: must be >= 1, got {cfg.optim.line_search_evals}")
    if cfg.scales.min < 0:
        raise ConfigError(f"scales.min: must be >= 0, got {cfg.scales.min}")
    if cfg.scales.min and cfg.scales.factor <= 1:
        raise ConfigError(f"scales.factor: must be > 1, got {cfg.scales.factor}")
    if cfg.scales.steps < 1:
        raise ConfigError(f"scales.steps: must be >= 1, got {cfg.scales.steps}")
    _choice("color.preserve", cfg.color.preserve, COLOR_MODES)
    if cfg.trainer.max_steps < 1:
        raise ConfigError(f"trainer.max_steps: must be >= 1, got {cfg.trainer.max_steps}")
    if not 0 <= cfg.trainer.tolerance < 1:
        raise ConfigError(f"trainer.tolerance: a fraction in [0, 1), got {cfg.trainer.tolerance}")
    if cfg.trainer.patience < 1:
        raise ConfigError(f"trainer.patience: must be >= 1 step, got {cfg.trainer.patience}")
    devices = cfg.trainer.devices
    if not (devices in (1, "1", "auto") or (isinstance(devices, ListConfig) and len(devices) == 1)):
        raise ConfigError(f"trainer.devices: one run optimizes on one device (got {devices}); for several GPUs run "
                          f"a sweep, one process per GPU (make sweep NPROC=N, or torchrun --nproc_per_node=N -m "
                          f"nst.sweep)")
    if str(cfg.trainer.precision) in ("64", "64-true"):
        raise ConfigError("trainer.precision: 64 is not supported (VGG19 and L-BFGS compute in float32 at most; "
                          "use 32 or bf16-mixed)")
    _choice("trainer.precision", str(cfg.trainer.precision), PRECISIONS)
    if str(cfg.trainer.precision) == "16-mixed" and cfg.optim.name == "lbfgs":
        raise ConfigError("trainer.precision: 16-mixed (gradient scaling) does not work with L-BFGS; "
                          "use bf16-mixed or 32")
    _choice("logger.mode", cfg.logger.mode, LOGGER_MODES)
    if cfg.logger.log_every < 1 or cfg.logger.image_every < 0:
        raise ConfigError("logger.log_every must be >= 1 and logger.image_every >= 0")
    if cfg.output.save_every < 0:
        raise ConfigError(f"output.save_every: must be >= 0, got {cfg.output.save_every}")
    if cfg.output.checkpoint_every < 0:
        raise ConfigError(f"output.checkpoint_every: must be >= 0, got {cfg.output.checkpoint_every}")
    if not cfg.output.dir:
        raise ConfigError("output.dir: must not be empty")
    if cfg.init not in INITS and not os.path.splitext(cfg.init)[1]:
        raise ConfigError(f"init: unknown value '{cfg.init}' (choose content, noise, style or an image path)")
    if not (isinstance(cfg.resume, bool) or cfg.resume == "force"):
        raise ConfigError(f"resume: expected true, false or force, got {cfg.resume!r}")
    validate_sweep(cfg.sweep)
    validate_video(cfg.video)
    from . import masks  # torch: only when a config is checked, not for --help

    masks.check_config(cfg.masks, len(styles), bool(cfg.sweep.contents or cfg.sweep.pairs))
    validate_tiling(cfg.tiling, content + style)
    if cfg.masks.content and cfg.tiling.enabled is True:
        raise ConfigError("tiling.enabled: masks are not tiled (guided Grams are evaluated whole): use "
                          "tiling.enabled=auto or false with masks.content")


def bounded_integers(node: DictConfig | ListConfig, prefix: str = "") -> None:
    """Every integer value, lists included, within +-INT_LIMIT (a ConfigError naming the key)."""
    for k, v in node.items() if isinstance(node, DictConfig) else enumerate(node):
        key = f"{prefix}[{k}]" if isinstance(node, ListConfig) else f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (DictConfig, ListConfig)):
            bounded_integers(v, key)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_LIMIT:
            raise ConfigError(f"{key}: {v} is out of range (integers are at most {INT_LIMIT})")


def validate_tiling(t: DictConfig, layers: list[str]) -> None:
    if t.enabled not in (True, False, "auto"):
        raise ConfigError(f"tiling.enabled: expected auto, true or false, got {t.enabled!r}")
    if not (t.margin == "auto" or (isinstance(t.margin, int) and not isinstance(t.margin, bool))):
        raise ConfigError(f"tiling.margin: expected auto or a number of pixels, got {t.margin!r}")
    from .model.tiling import Tiling, auto_margin  # torch: only when a config is checked, not for --help

    need = auto_margin(layers)
    try:
        Tiling(t.block, need if t.margin == "auto" else t.margin).check(layers)
    except ValueError as e:
        raise ConfigError(f"tiling.block, tiling.margin: {e}") from None
    if t.margin != "auto" and t.margin < need and t.exact:
        raise ConfigError(f"tiling.margin: {t.margin} px is less than the {need} px {max(layers, key=LAYERS.index)} "
                          f"sees around a block: not exact (use auto, or tiling.exact=false for the approximation)")


def validate_video(video: DictConfig) -> None:
    if video.start < 0:
        raise ConfigError(f"video.start: a frame index >= 0, got {video.start}")
    if video.max_frames < 0:
        raise ConfigError(f"video.max_frames: must be >= 0 (0: every frame), got {video.max_frames}")
    if not MIN_FPS <= video.fps <= MAX_FPS:  # also NaN
        raise ConfigError(f"video.fps: frames per second in [{MIN_FPS:g}, {MAX_FPS:g}], got {video.fps}")
    if not video.temporal_weight >= 0 or math.isinf(video.temporal_weight):
        raise ConfigError(f"video.temporal_weight: must be >= 0 and finite, got {video.temporal_weight}")
    long_term = list(video.long_term)
    if not long_term or any(j < 1 for j in long_term) or len(set(long_term)) != len(long_term):
        raise ConfigError(f"video.long_term: distinct frame distances >= 1, e.g. [1] or [1, 2, 4], got {long_term}")
    if video.steps_later < 1:
        raise ConfigError(f"video.steps_later: must be >= 1, got {video.steps_later}")
    if video.chunk < 0:
        raise ConfigError(f"video.chunk: frames per chunk, >= 0 (0: the whole clip), got {video.chunk}")
    if not 0 <= video.crf <= 51:
        raise ConfigError(f"video.crf: H.264 quality 0..51, got {video.crf}")


def validate_sweep(sweep: DictConfig) -> None:
    """The sweep keys: both of contents/styles or neither, pairs of two paths, not both forms at once."""
    for key in ("contents", "styles"):
        if any(not isinstance(p, str) or not p for p in sweep[key]):
            raise ConfigError(f"sweep.{key}: expected a list of paths or globs")
    if bool(sweep.contents) != bool(sweep.styles):
        missing = "styles" if sweep.contents else "contents"
        raise ConfigError(f"sweep.{missing}: needed too when sweep.{'contents' if sweep.contents else 'styles'} "
                          f"is given (the sweep runs every content with every style)")
    if sweep.pairs and sweep.contents:
        raise ConfigError("sweep.pairs: give either sweep.pairs or sweep.contents and sweep.styles, not both")
    for i, pair in enumerate(sweep.pairs):
        if isinstance(pair, DictConfig):
            pair = [pair.get("content"), pair.get("style")] if set(pair.keys()) == {"content", "style"} else None
        if not (isinstance(pair, (list, ListConfig)) and len(pair) == 2 and all(isinstance(p, str) and p for p in pair)):
            raise ConfigError(f"sweep.pairs[{i}]: expected [content, style] or {{content: ..., style: ...}} paths")
    if sweep.name is not None and (not sweep.name.strip() or len(sweep.name) > 128):
        raise ConfigError("sweep.name: must be a non-empty name of at most 128 characters")
    if sweep.cell < 32:
        raise ConfigError(f"sweep.cell: must be >= 32 pixels, got {sweep.cell}")
    if sweep.stale_after < 60:
        raise ConfigError(f"sweep.stale_after: at least 60 seconds (claims beat every 20), got {sweep.stale_after}")
    batch = sweep.batch
    if batch != "auto" and not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        raise ConfigError(f"sweep.batch: expected auto or a number of pairs >= 1, got {batch!r}")


def scale_sizes(cfg: DictConfig) -> list[int]:
    """Longest sides of the scales, smallest first, ending at data.size (model/schedule.py)."""
    return sizes_of_scales(cfg.data.size, cfg.scales.min, cfg.scales.factor)


def steps_per_scale(cfg: DictConfig) -> list[int]:
    """scales.steps at each scale below the last, but at most 60% of trainer.max_steps in all (model/schedule.py)."""
    sizes = scale_sizes(cfg)
    try:
        return steps_of_scales(len(sizes), cfg.trainer.max_steps, cfg.scales.steps)
    except ValueError:
        raise ConfigError(f"trainer.max_steps: {cfg.trainer.max_steps} steps are too few for {len(sizes)} scales "
                          f"(raise trainer.max_steps or scales.min, or set scales.min=0)") from None


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
