"""The config schema: every key, its type, its default and, in the comment beside it (or right above it), what it
means. `--help` reads those comments from this file's source (helptext.py): one place for a key's meaning.

Loading, merging overrides and validating a config is config.py's job; this file only says what a config holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .model.layers import NAMED_SOURCES

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
