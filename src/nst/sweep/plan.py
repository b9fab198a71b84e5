"""The plan of a sweep: which pairs, each pair's own config and folder, and whether a pair is already done.

The pairs are `sweep.contents x sweep.styles` (paths or globs) or an explicit `sweep.pairs` list, in a fixed
order that every process computes alike. A pair's config is the sweep's with its images, folder and W&B names;
a pair is complete when its outputs exist and were made with the settings the sweep would use now. A content
that is a clip (a video file or a folder of frames, as `video.decode.is_video` says) makes video pairs: complete
with final.mp4 instead of final.png, resumable from their folder's progress.json (nst/video/run.py).
"""

from __future__ import annotations

import copy
import glob
import os
import re
import itertools
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..config import validate
from ..schema import SweepConfig
from ..errors import ConfigError, UserError, first_line
from ..keys import NOT_RESULT_KEYS
from ..paths import stem
from ..runner import checkpoint
from ..video.decode import is_pattern, natural_key

OUTPUTS = ("final.png", "metrics.json", "config.yaml")
VIDEO_OUTPUTS = ("final.mp4", "metrics.json", "config.yaml")
VIDEO_PROGRESS = "progress.json"  # a video's written frames (video/run.py's PROGRESS)
# Keys that do not change a pair's result, and whether it keeps a checkpoint: a pair made with other values of
# these is still complete.
NOT_PAIR_RESULT_KEYS = NOT_RESULT_KEYS + ("output.checkpoint",)



@dataclass
class Pair:
    """One run of the sweep: a content/style pair, with one setting of the grid when there is one."""
    index: int  # position in the sweep (content-major for contents x styles, then the grid's settings)
    content: str
    style: str
    name: str  # <content-stem>__<style-stem>, then __<setting> with a grid
    dir: str
    settings: dict = field(default_factory=dict)  # grid key -> value for this run
    setting: str = ""  # the settings as a name, e.g. style_weight-10 ("" without a grid)
    video: bool = False  # the content is a clip: the pair is a video run (nst/video/run.py)
    previous: str = ""  # a chunk after the first (video.chunk): the folder of the chunk before it

    @property
    def outputs(self) -> tuple[str, ...]:
        return VIDEO_OUTPUTS if self.video else OUTPUTS

    @property
    def result_file(self) -> str:
        return self.outputs[0]


def expand(key: str, patterns: list[str]) -> list[str]:
    """Paths and globs -> paths, in order, each once. A glob that matches nothing is a config error; a plain
    path that does not exist is kept (its pairs fail and say why, the others run)."""
    out: list[str] = []
    for pattern in patterns:
        if is_pattern(pattern):
            matches = sorted((p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)), key=natural_key)
            if not matches:
                raise ConfigError(f"sweep.{key}: '{pattern}' matches no file")
        else:
            matches = [pattern]
        for m in matches:
            if os.path.normpath(m) not in {os.path.normpath(p) for p in out}:
                out.append(m)
    return out


def plan(cfg: DictConfig) -> list[Pair]:
    """Every run of the sweep in a fixed order (the same in every process): each pair once, times every setting
    of sweep.grid."""
    sweep = cfg.sweep
    if sweep.contents:
        raw = [(c, s) for c in expand("contents", list(sweep.contents)) for s in expand("styles", list(sweep.styles))]
    elif sweep.pairs:
        raw = [(p["content"], p["style"]) if isinstance(p, DictConfig) else (p[0], p[1]) for p in sweep.pairs]
    else:
        raise ConfigError("sweep: no pairs; set sweep.contents and sweep.styles (paths or globs), or sweep.pairs")
    settings = grid_settings(cfg)
    from ..video.decode import is_video  # PyAV only when a clip is read
    videos = {c: is_video(c) for c in dict.fromkeys(c for c, _ in raw)}
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    by_name: dict[str, Pair] = {}
    joined: dict[str, Pair] = {}  # the folder each chunked clip's chunks are joined into (sweep/join.py)
    chunks = {c: video_chunks(cfg, c) if videos[c] else [({}, "")] for c in videos}
    for content, style in raw:
        key = (os.path.normpath(content), os.path.normpath(style))
        if key in seen:
            continue  # the same pair listed twice is computed once
        seen.add(key)
        for (grid_values, grid_label), (chunk_values, chunk_label) in itertools.product(settings, chunks[content]):
            values = {**grid_values, **chunk_values}
            label = "_".join(x for x in (grid_label, chunk_label) if x)
            name = f"{stem(content)}__{stem(style)}" + (f"__{label}" if label else "")
            if name in by_name:
                other = by_name[name]
                raise ConfigError(f"sweep: {content} + {style} and {other.content} + {other.style} would both write "
                                  f"{os.path.join(cfg.output.dir, name)} (same file names; rename one)")
            previous = pairs[-1] if chunk_values and chunk_values["video.start"] > cfg.video.start else None
            pair = Pair(len(pairs), content, style, name, os.path.join(cfg.output.dir, name), values, label,
                        videos[content], previous.dir if previous is not None else "")
            pairs.append(pair)
            by_name[name] = pair
            if chunk_label:  # its chunks are joined into the folder of the pair's name without the chunk label
                whole = f"{stem(content)}__{stem(style)}" + (f"__{grid_label}" if grid_label else "")
                other = joined.setdefault(whole, pair)
                if os.path.normpath(other.content) != os.path.normpath(content):
                    raise ConfigError(f"sweep: the chunks of {content} + {style} and of {other.content} + "
                                      f"{other.style} would both be joined into {os.path.join(cfg.output.dir, whole)}"
                                      f" (same file names; rename one)")
    for whole, pair in joined.items():
        if whole in by_name:
            other = by_name[whole]
            raise ConfigError(f"sweep: the chunks of {pair.content} + {pair.style} are joined into "
                              f"{os.path.join(cfg.output.dir, whole)}, which {other.content} + {other.style} "
                              f"writes too (same file names; rename one)")
    return pairs


def video_chunks(cfg: DictConfig, content: str) -> list[tuple[dict, str]]:
    """With video.chunk = C, a clip's frames in runs of C: each chunk's video.start and video.max_frames, and its
    name (frames-1-30). [({}, "")] without chunks, or when the clip cannot be read (its pair then fails and says
    why)."""
    v = cfg.video
    if not v.chunk:
        return [({}, "")]
    from ..video.decode import count_frames
    try:
        n = count_frames(content, v.start, v.max_frames)
    except UserError:
        return [({}, "")]
    out = []
    for s in range(0, n, v.chunk):
        length = min(v.chunk, n - s)
        out.append(({"video.start": v.start + s, "video.max_frames": length},
                    f"frames-{v.start + s + 1}-{v.start + s + length}"))
    return out or [({}, "")]


# Keys a grid may not vary: they name the pairs, their folders, or the sweep itself.
NOT_GRID_KEYS = ("data.content", "data.style", "data.style_weights", "output.dir", "resume", "sweep")


def grid_keys(cfg: DictConfig) -> dict[str, list]:
    """sweep.grid as dotted key -> values ({loss: {style_weight: [..]}} and {loss.style_weight: [..]} alike)."""
    flat: dict[str, list] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, DictConfig):
                walk(value, f"{dotted}.")
            elif isinstance(value, ListConfig) and len(value) > 0:
                flat[dotted] = list(OmegaConf.to_container(value, resolve=True))
            else:
                raise ConfigError(f"sweep.grid.{dotted}: expected a non-empty list of values, got {value!r}")
    walk(cfg.sweep.grid, "")
    return flat


def grid_settings(cfg: DictConfig) -> list[tuple[dict, str]]:
    """Every combination of the grid's values, with its name; [({}, "")] without a grid. A value that is not
    valid for its key is a ConfigError naming both, before anything runs."""
    grid = grid_keys(cfg)
    if not grid:
        return [({}, "")]
    labels = {}
    for key in grid:
        if key in NOT_GRID_KEYS or key.split(".")[0] in NOT_GRID_KEYS:
            raise ConfigError(f"sweep.grid.{key}: not a setting a grid can vary (it names the pairs or the sweep)")
        if key == "video.chunk" or (cfg.video.chunk and key in ("video.start", "video.max_frames")):
            raise ConfigError(f"sweep.grid.{key}: not a setting a grid can vary (video.chunk plans each clip's chunks "
                              f"from the sweep's video.start, video.max_frames and video.chunk; run one sweep per value)")
        last = key.split(".")[-1]
        labels[key] = last if sum(k.split(".")[-1] == last for k in grid) == 1 else key.replace(".", "-")
    for key, values in grid.items():
        for value in values:
            try:
                check = copy.deepcopy(cfg)
                OmegaConf.update(check, key, value, merge=False)
                check.sweep = OmegaConf.structured(SweepConfig)
                validate(check)
            except ConfigError as e:
                raise ConfigError(f"sweep.grid.{key}: {value!r}: {e}") from None
            except Exception as e:  # OmegaConf: an unknown key or a value of the wrong type
                raise ConfigError(f"sweep.grid.{key}: {value!r}: {first_line(e)}") from None
    out = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        label = "_".join(f"{labels[k]}-{_value_name(v)}" for k, v in values.items())
        out.append((values, label))
    return out


def _value_name(value) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "none"


def sweep_name(cfg: DictConfig) -> str:
    if cfg.sweep.name:
        return cfg.sweep.name
    if cfg.logger.group:
        return cfg.logger.group
    return os.path.basename(os.path.normpath(os.path.abspath(cfg.output.dir)))


def pair_config(cfg: DictConfig, pair: Pair, device: Optional[int] = None) -> DictConfig:
    """The single-run config of one pair: the sweep's settings, this pair's images and folder, W&B grouping.

    Its sweep section is reset to the defaults, so `train.py --config <pair>/config.yaml` redoes this pair."""
    pc = copy.deepcopy(cfg)  # keeps the schema: values are type-checked as they are set
    for key, value in pair.settings.items():
        OmegaConf.update(pc, key, value, merge=False)
    pc.data.content = pair.content
    pc.data.style = pair.style
    pc.data.style_weights = None
    pc.output.dir = pair.dir
    pc.logger.group = sweep_name(cfg)
    pc.logger.job_type = "pair"
    pc.logger.name = pair.name
    pc.logger.tags = list(cfg.logger.tags) + [f"content:{stem(pair.content)}"[:64], f"style:{stem(pair.style)}"[:64]]
    pc.logger.tags += [f"{k}={v}"[:64] for k, v in pair.settings.items()]
    pc.sweep = OmegaConf.structured(SweepConfig)
    if device is not None:
        pc.trainer.accelerator = "gpu"
        pc.trainer.devices = [device]
    else:
        pc.trainer.accelerator = "cpu"
        pc.trainer.devices = 1
    validate(pc)
    return pc


def result_view(container: dict) -> dict:
    """A config as a plain dict without the keys that do not change the result."""
    for dotted in NOT_PAIR_RESULT_KEYS:
        *parents, last = dotted.split(".")
        node = container
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return container


def made_alike(folder: str, pc: DictConfig) -> bool:
    """Whether the run in `folder` was made with `pc`'s settings, but for what tells chunks of a clip apart (their
    frames and folders): a chunk's seam comes only from a previous chunk made like it (not an older sweep's)."""
    try:
        stored = OmegaConf.to_container(OmegaConf.load(os.path.join(folder, "config.yaml")), resolve=True)
    except Exception:
        return False
    views = [result_view(c) for c in (stored, OmegaConf.to_container(pc, resolve=True))]
    for view in views:
        view.get("output", {}).pop("dir", None)
        view.get("video", {}).pop("start", None)
        view.get("video", {}).pop("max_frames", None)
    return first_difference(*views) is None


def first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(dict.fromkeys([*a, *b])):
            d = first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} -> {b!r}"


def state(pair: Pair, pc: DictConfig) -> tuple[str, str]:
    """(state, why) of a pair's folder: `complete` (all three outputs, made with this sweep's settings for the
    pair), `resumable` (an interrupted run's checkpoint, or a video's progress.json, with the same settings) or
    `todo`."""
    outputs = pair.outputs
    missing = [f for f in outputs if not os.path.isfile(os.path.join(pair.dir, f))]
    if len(missing) == len(outputs):
        return "todo", "new"
    try:
        stored = OmegaConf.to_container(OmegaConf.load(os.path.join(pair.dir, "config.yaml")), resolve=True)
    except Exception as e:  # no or an unreadable config.yaml: redo the pair
        return "todo", f"incomplete (no {', '.join(missing)})" if missing else f"unreadable config.yaml ({type(e).__name__})"
    diff = first_difference(result_view(stored), result_view(OmegaConf.to_container(pc, resolve=True)))
    if diff:
        return "todo", f"settings changed ({diff})"
    if not missing:
        return "complete", "complete"
    if pair.video:
        if os.path.isfile(os.path.join(pair.dir, VIDEO_PROGRESS)):  # the written frames are kept, whatever is missing
            return "resumable", f"interrupted earlier, resuming from {VIDEO_PROGRESS}"
    elif "final.png" in missing and os.path.isfile(checkpoint.path_in(pair.dir)):
        return "resumable", f"interrupted earlier, resuming from {checkpoint.FILENAME}"
    return "todo", f"incomplete (no {', '.join(missing)})"


