"""What a video's folder says about an earlier run of it, and whether this run may continue it.

progress.json holds the clip's identity (source, first frame, frame count, size), the inputs record (digests of
the frames and the styles, and the settings of the loss: the same check as an image run's checkpoint,
runner/checkpoint.check_inputs; resume=force lets it differ) and each written frame's numbers. A frame counts as
written only when its PNG is there and reads whole, at the clip's size: a resume continues after the last such
frame, and recomputes the rest."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

from PIL import Image

from ..errors import ConfigError, first_line
from ..files import save_json
from ..runner.checkpoint import check_inputs
from ..runner.job import digest, objective_settings

PROGRESS = "progress.json"


def inputs_record(job) -> dict:
    """Digests of the VideoJob's frames and styles as read, and the settings of its loss (temporal ones too)."""
    v = job.cfg.video
    return {"content": job.clip.digest or digest_frames(job.clip.frames), "styles": [digest(s) for s in job.styles],
            "settings": {**objective_settings(job.cfg), "video.temporal_weight": float(v.temporal_weight),
                         "video.long_term": list(v.long_term)}}


def digest_frames(frames) -> str:
    """A digest of frames (read_clip makes it as it checks them: Clip.digest)."""
    h = hashlib.sha256()
    for frame in frames:
        h.update(frame.tobytes())
    return h.hexdigest()[:16]


def written(path: str) -> int:
    """How many frames the progress.json at `path` lists (0 when there is none, or it is unreadable)."""
    try:
        with open(path) as f:
            return len(json.load(f).get("frames", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return 0


def warn_replaced(job) -> None:
    """A fresh run (no resume=true) over an unfinished earlier one replaces its frames: say so, and how to keep
    them."""
    n = written(os.path.join(job.dir, PROGRESS))
    if n and not os.path.isfile(os.path.join(job.dir, "final.mp4")):
        warnings.warn(f"{job.dir} holds {n} frames of an unfinished earlier run of this video, which will be "
                      f"replaced; add resume=true to continue that run instead", stacklevel=3)


def _whole(path: str, size: tuple[int, int]) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
            return im.size == size
    except Exception:  # missing, truncated or not a PNG: computed again
        return False


def frames_to_resume(job) -> tuple[list[dict], bool]:
    """The rows of the frames a resumed VideoJob keeps and whether its first frame came from a previous chunk's
    last (a seam), or a ConfigError when progress.json is missing, unreadable,
    another clip's, or made from other inputs (without resume=force)."""
    path = os.path.join(job.dir, PROGRESS)
    if not os.path.isfile(path):
        raise ConfigError(f"resume: no {path} to resume (run without resume=true to start this video)")
    try:
        with open(path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except Exception as e:
        raise ConfigError(f"resume: {path} is unreadable ({first_line(e, 120)})") from None
    if saved.get("identity") != job.identity():
        raise ConfigError(f"resume: {path} is another video's or another setting's ({saved.get('identity')}); "
                          f"run without resume=true to start over")
    unchecked = check_inputs({"nst": {"inputs": saved.get("inputs")}}, path, inputs_record(job),
                             force=job.cfg.resume == "force")
    if unchecked:
        warnings.warn(unchecked, stacklevel=3)
    done = []
    for row in saved.get("frames", []):  # frames whose PNG is there and whole, in order
        if not _whole(job.frame_path(len(done)), job.clip.size):
            break
        done.append(row)
    return done, bool(saved.get("seam")) and bool(done)


def save_progress(job) -> None:
    if job.record is None:
        job.record = inputs_record(job)
    save_json({"identity": job.identity(), "inputs": job.record, "seam": job.seam is not None or job.from_seam,
               "frames": job.frames_done},
              os.path.join(job.dir, PROGRESS))
