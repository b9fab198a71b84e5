"""Checkpoints: last.ckpt in output.dir holds what a run needs to go on, and nothing it can rebuild.

What is in one: the target image (the module's only state_dict entry: the VGG19 weights are non-persistent
buffers), the optimizer state, Lightning's loop counters, and an "nst" entry with the step, the target's shape
and the optimizer's name. Content and style targets are recomputed on resume from the images.

Adam keeps its full state, so with a fixed seed on the CPU an interrupted and resumed run ends with the same
image as an uninterrupted one. L-BFGS keeps no history (its 2 x optim.history image-sized vectors would make
the file 100x larger): a resumed L-BFGS run restarts its curvature estimate, like at a new scale.

Files are read with torch.load(weights_only=True): a checkpoint cannot run code.
"""

from __future__ import annotations

import os

import torch

from ..errors import ConfigError, first_line
from ..files import replaced_atomically

FILENAME = "last.ckpt"
FORMAT = 1


def path_in(folder: str) -> str:
    return os.path.join(folder, FILENAME)


def save(trainer, path: str) -> None:
    """trainer.save_checkpoint through a temporary file and a rename: never a half-written checkpoint."""
    with replaced_atomically(path) as tmp:
        trainer.save_checkpoint(tmp, weights_only=False)


def load(path: str) -> dict:
    """A checkpoint written by this program, read safely, or a one-line ConfigError naming the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"resume: no checkpoint at {path} (an interrupted run writes it; "
                          f"drop resume=true to start over)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"resume: {path} is not a readable checkpoint ({first_line(e, 160)})") from None
    meta = ckpt.get("nst") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "state_dict" not in ckpt:
        raise ConfigError(f"resume: {path} is not a checkpoint of this program")
    return ckpt


def check_resumable(ckpt: dict, path: str, module, max_steps: int) -> int:
    """The step to resume from, or a ConfigError when this config cannot continue that checkpoint."""
    meta = ckpt["nst"]
    step = int(meta["step"])
    if meta["optim"] != module.optim_name:
        raise ConfigError(f"resume: {path} was made with optim.name={meta['optim']}, this config has "
                          f"optim.name={module.optim_name}")
    if step >= max_steps:
        raise ConfigError(f"resume: {path} is already at step {step} of trainer.max_steps={max_steps}; "
                          f"raise trainer.max_steps to go on")
    # The image after `step` steps has the size of the scale of the last step done (the next step may
    # enter a new scale and upsample it, exactly as an uninterrupted run does).
    h, w = module.size_hw(module.schedule.scale_at(max(step - 1, 0)))
    saved = tuple(meta["shape"])
    if saved != (1, 3, h, w):
        raise ConfigError(f"resume: {path} holds a {saved[-1]}x{saved[-2]} image at step {step}, this config "
                          f"expects {w}x{h} there (keep data.size, data.content and scales.* as they were)")
    target = ckpt["state_dict"].get("target")
    if not torch.is_tensor(target) or tuple(target.shape) != saved or not torch.isfinite(target).all():
        raise ConfigError(f"resume: {path} does not hold a valid target image")
    return step
