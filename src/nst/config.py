"""Every default in one place: the config schema, loading, merging overrides and validation.

A config is the schema's defaults, then a YAML file, then `key=value` overrides, merged by OmegaConf. A key
that is not in the schema or a value of the wrong type is an error naming the full key.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, first_line
from .model.layers import LAYERS, NAMED_SOURCES, looks_like_path
from .paths import named_config, resolve_inputs

PRESETS = {
    # Gatys et al. 2015, Figure 2: content at conv4_2, style at conv1_1..conv5_1 with equal weights.
    "paper": {"content_layers": ["conv4_2"],
              "style_layers": ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]},
    # The seed variant: content and style both at conv1_1..conv5_1.
    "seed": {"content_layers": ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"],
             "style_layers": ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]},
}
INITS = ("content", "noise", "style")
NAMED = {"weights": NAMED_SOURCES, "init": INITS}  # values of input keys that are names, not paths
OPTIMIZERS = ("lbfgs", "adam")
COLOR_MODES = ("none", "luminance", "histogram")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
# Keys that were removed, and what took their place: a config that still sets one gets this in its error.
REMOVED = {"trainer.log_every_n_steps": "logger.log_every (steps between W&B loss logs)"}
PRECISIONS = ("auto", "32", "32-true", "bf16-mixed", "16-mixed")
INT_LIMIT = 2**31 - 1  # no integer key goes past an int32: a larger one overflows torch's counters mid-run
MIN_FPS, MAX_FPS = 0.01, 1000.0  # video.fps: what an H.264 stream's time base can hold


@dataclass
class DataConfig:
    content: str = "assets/tubingen.jpg"  # the photograph (or a video, a folder or a glob of frames)
    style: Any = "assets/starry_night.jpg"  # the painting: a path or a list of paths
    style_weights: Optional[List[float]] = None  # blend weights, one per style (default: equal)
    size: int = 384  # longest side of the output in pixels
    style_scale: float = 1.0  # style image's longest side relative to the output's


@dataclass
class ModelConfig:
    weights: str = "caffe"  # caffe | torchvision | random | path to a .pth state dict
    preset: str = "paper"  # paper | seed: the layer choice when the lists below are not given
    content_layers: Optional[List[str]] = None  # e.g. [conv4_2] (default: the preset's)
    style_layers: Optional[List[str]] = None  # e.g. [conv1_1, conv2_1] (default: the preset's)
    style_layer_weights: Optional[List[float]] = None  # one per style layer (default: equal, summing to 1)
    pooling: str = "max"  # max | avg


@dataclass
class LossConfig:
    content_weight: float = 1.0  # weight of the content loss
    style_weight: float = 30.0  # weight of the style loss: more style weight, more painting
    tv_weight: float = 0.0  # weight of the total-variation loss (smoothness; 0: off)
    # Divide each layer's loss by its target's magnitude, so one set of weights fits every layer, image size
    # and weight source (caffe features are ~100x larger than torchvision's).
    normalize: bool = True


@dataclass
class OptimConfig:
    name: str = "lbfgs"  # lbfgs | adam
    lr: float = 1.0  # lbfgs: step scale (1 is right); adam: pixel step, 0.02 is a good start
    history: int = 20  # lbfgs memory: 2 x history image-sized vectors, read twice per step
    # lbfgs: evaluations the first step of each scale may spend on its strong-Wolfe line search. 1: try torch's
    # first step length and keep it if the loss falls (what torch.optim.LBFGS does with max_iter=1).
    line_search_evals: int = 1
    # lbfgs: at a new scale, keep the curvature pairs (upsampled with the image) instead of starting over
    carry_history: bool = True


@dataclass
class ScalesConfig:
    """Coarse to fine: optimize at small sizes first (faster, and larger brush strokes). min=0: one scale."""
    min: int = 192  # smallest longest side; no coarse scales when data.size <= min
    factor: float = 2.0  # ratio between consecutive scales
    steps: int = 60  # steps at each scale below the last (at most 60% of trainer.max_steps in all)


@dataclass
class ColorConfig:
    preserve: str = "none"  # none | luminance | histogram


@dataclass
class MasksConfig:
    """Spatial control (Gatys et al. 2017): a style per region of the content, through guided Gram matrices."""
    content: List[str] = field(default_factory=list)  # one mask per data.style, in its order, white where it goes
    style: List[Optional[str]] = field(default_factory=list)  # per style: the part of it that gives the statistics
    mode: str = "inside"  # inside (no gradient leaks out) | simple (downsampled) | all (dilated)
    soft: bool = False  # grey levels are blend weights (false: thresholded at 50% at every scale)
    grow: int = 0  # grow (> 0) or shrink (< 0) each region by this many feature pixels at every style layer


@dataclass
class TrainerConfig:
    """The training loop: max_steps, accelerator, devices, precision and deterministic are passed to
    lightning.Trainer; the others are this program's."""
    max_steps: int = 150  # optimization steps, all scales together
    accelerator: str = "auto"  # auto | cpu | gpu (passed to lightning.Trainer)
    devices: Any = 1  # one run is one device: 1 (or auto, or [index]); several GPUs take a sweep, one process each
    precision: str = "auto"  # auto: bf16-mixed where the hardware is fast at it, else 32
    enable_progress_bar: bool = True  # a bar on a terminal, ten plain lines in a log (our display, not Lightning's)
    deterministic: bool = False  # deterministic algorithms only (docs/reliability.md: reproducibility)
    # stop when the loss (at the last scale) has fallen by less than this fraction over the last `patience`
    # steps; 0: always run max_steps. metrics.json says why a run stopped.
    tolerance: float = 0.0
    patience: int = 10  # steps over which trainer.tolerance is measured
    # cuDNN autotuning tries every algorithm for each new shape: seconds per scale and per style image size, more
    # than it saves in a run of a few hundred steps (docs/benchmarks.md). Only used on GPUs.
    cudnn_benchmark: bool = False
    # refuse a run whose estimated memory (runner/memory.py) exceeds what the device (or, on the CPU, the
    # machine) has free, before anything is allocated; false: try anyway
    check_memory: bool = True


@dataclass
class TilingConfig:
    """Exact tiled evaluation of large images, block by block (Galerne et al. 2024; docs/tiling.md)."""
    enabled: Any = "auto"  # auto: tile a scale only when it would not fit whole in memory | true | false
    block: int = 512  # interior side of a block in px, a multiple of 16 (of 4 with layers up to conv3_x)
    margin: Any = "auto"  # px around a block; auto: the deepest layer's reach (80 at conv5_1); less: exact=false only
    exact: bool = True  # false: each block's own Gram against the style's (a baseline with seams, for comparison)


@dataclass
class OutputConfig:
    dir: str = "outputs/run"  # where the run writes final.png, config.yaml, metrics.json, last.ckpt
    save_every: int = 0  # write step_NNNNN.png every N steps (0: only final.png)
    checkpoint: bool = True  # also write last.ckpt at the end (an interrupted run always writes it)
    # last.ckpt every N steps as well (0: never), so that a run killed outright loses at most N steps
    checkpoint_every: int = 50


@dataclass
class LoggerConfig:
    mode: str = "auto"  # auto (online with W&B credentials, else offline) | online | offline | disabled
    project: Optional[str] = None  # default: WANDB_PROJECT, else neural-style
    entity: Optional[str] = None  # default: WANDB_ENTITY, else the W&B key's default entity
    group: Optional[str] = None  # W&B group, to compare runs together (a sweep sets it)
    job_type: str = "single"  # W&B job type (a sweep's pairs: pair)
    tags: List[str] = field(default_factory=list)  # W&B tags
    name: Optional[str] = None  # W&B run name (default: W&B's)
    notes: Optional[str] = None  # the run's description in W&B
    log_checkpoint: bool = False  # also log last.ckpt as a versioned W&B artifact (type model)
    log_every: int = 1  # steps between loss logs
    image_every: int = 50  # steps between image grids (and at the end)


@dataclass
class SweepConfig:
    """Many content/style pairs in one command (python -m nst.sweep). Empty lists: not a sweep."""
    contents: List[str] = field(default_factory=list)  # paths or globs; the sweep is contents x styles
    styles: List[str] = field(default_factory=list)  # style paths or globs
    pairs: List[Any] = field(default_factory=list)  # or explicit [content, style] pairs (instead of the above)
    name: Optional[str] = None  # W&B group of the pairs' runs (default: logger.group, else output.dir's name)
    cell: int = 256  # contact sheet: side of one square cell in pixels
    # pairs optimized together as one batch (same target size): auto = as many as fit on a GPU, 1 on a CPU
    batch: Any = "auto"
    # seconds after which a claim on a pair whose heartbeat stopped is taken over (on any host)
    stale_after: float = 300.0
    # settings to compare: any single-run key -> a list of values; every pair runs with every combination,
    # e.g. {loss.style_weight: [10, 30, 100], color.preserve: [none, luminance]}
    grid: Dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoConfig:
    """data.content a video (mp4, mov, mkv, webm, avi, animated GIF), a folder or a glob of frames: stylized frame by
    frame with temporal consistency (Ruder, Dosovitskiy and Brox 2016; see nst/video/)."""
    start: int = 0  # first frame used (0-based)
    max_frames: int = 0  # at most this many frames from `start` (0: to the end)
    fps: float = 25.0  # frame rate of a folder or glob of frames (a video file keeps its own)
    # false: the per-frame baseline, each frame from its own content with no temporal loss
    temporal: bool = True
    temporal_weight: float = 100.0  # the temporal loss against the earlier stylized frames warped into this one
    # earlier frames the temporal loss looks at ([1]: the previous one; [1, 2, 4]: Ruder's long-term consistency)
    long_term: List[int] = field(default_factory=lambda: [1])
    steps_later: int = 50  # steps of each frame after the first (which runs trainer.max_steps, all scales)
    crf: int = 18  # H.264 quality of final.mp4 (0 lossless .. 51; 18: visually lossless)
    # in a sweep: frames per chunk, each chunk of a clip a pair of its own (0: a clip is one pair; docs/video.md)
    chunk: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scales: ScalesConfig = field(default_factory=ScalesConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    init: str = "content"  # content | noise | style | path to an image
    seed: int = 0  # seeds noise init and random weights (docs/reliability.md: reproducibility)
    # true: continue from output.dir/last.ckpt; force: even with other images or objective settings than the
    # checkpoint's (docs/reliability.md)
    resume: Any = False


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
    """Longest sides of the scales, smallest first, ending at data.size."""
    size = cfg.data.size
    if not cfg.scales.min or cfg.scales.min >= size:
        return [size]
    sizes = [size]
    while sizes[-1] / cfg.scales.factor >= cfg.scales.min - 0.5:
        sizes.append(round(sizes[-1] / cfg.scales.factor))
    return sizes[::-1]


def steps_per_scale(cfg: DictConfig) -> list[int]:
    """scales.steps at each scale below the last, but at most 60% of trainer.max_steps in all, so that a
    larger data.size (more scales) or fewer steps still leaves most of the work to the full-size image."""
    n_coarse = len(scale_sizes(cfg)) - 1
    total = cfg.trainer.max_steps
    if n_coarse == 0:
        return [total]
    each = min(cfg.scales.steps, int(0.6 * total) // n_coarse)
    if each < 1:
        raise ConfigError(f"trainer.max_steps: {total} steps are too few for {n_coarse + 1} scales "
                          f"(raise trainer.max_steps or scales.min, or set scales.min=0)")
    return [each] * n_coarse + [total - each * n_coarse]


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
