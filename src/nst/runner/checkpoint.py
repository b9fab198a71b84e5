"""Checkpoints: last.ckpt in each picture's output.dir holds what it needs to go on, and nothing it can rebuild.

What is in one: the target image (the module's only state_dict entry: the VGG19 weights are non-persistent
buffers), the optimizer state, Lightning's loop counters, and an "nst" entry with the step, the target's shape
and the optimizer's name, and (written by PairCheckpointIO) "inputs": digests of the content and style images
and the settings that define the objective, so that a resume with other inputs is refused (`check_inputs`), and
the id of the picture's W&B run (also in `wandb_id` beside it), which a resumed run goes on with.
Content and style targets are recomputed on resume from the images.

A batch of pictures is one Lightning checkpoint; PairCheckpointIO, the Trainer's checkpoint plugin, writes it
as one file per picture (its row of the target and of the optimizer state) and reads such files back into one.
So every picture of a batch can be resumed alone with `resume=true`, or again in a batch.

Adam keeps its full state, so with a fixed seed on the CPU an interrupted and resumed run ends with the same
image as an uninterrupted one. L-BFGS keeps no history (its 2 x optim.history image-sized vectors would make
the file 100x larger): a resumed L-BFGS run restarts its curvature estimate, like at a new scale.

Files are read with torch.load(weights_only=True): a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional

import torch
from lightning.pytorch.plugins.io import CheckpointIO

from ..errors import ConfigError, load_failure
from ..files import atomic_write

FILENAME = "last.ckpt"
FORMAT = 1


def path_in(folder: str) -> str:
    return os.path.join(folder, FILENAME)


def _row(value: Any, b: int, batch: int) -> Any:
    """Picture b's share of a batch checkpoint entry: its row of a [batch, ...] tensor, its item of a per-picture
    list, everything else as it is."""
    if torch.is_tensor(value):  # a copy: a checkpoint written in the background must not see later steps
        return value[b:b + 1].clone() if value.dim() > 0 and value.shape[0] == batch else value.clone()
    if isinstance(value, dict):
        return {k: _row(v, b, batch) for k, v in value.items()}
    return value


def split(checkpoint: dict, b: int) -> dict:
    """Picture b's own checkpoint from a batch's."""
    batch = checkpoint["state_dict"]["target"].shape[0]
    out = dict(checkpoint)
    out["state_dict"] = {"target": checkpoint["state_dict"]["target"][b:b + 1].clone()}
    out["optimizer_states"] = [_row(state, b, batch) for state in checkpoint.get("optimizer_states", [])]
    meta = dict(checkpoint["nst"])
    for key in PER_PICTURE:
        meta[key] = meta[key][b]  # a number, or (from the live module) a 0-d device tensor: see as_numbers
    out["nst"] = meta
    return out


def as_numbers(checkpoint: dict) -> dict:
    """A picture's checkpoint with its per-picture "nst" entries as plain numbers (a non-finite initial loss as
    None). The module hands them over as device tensors, so that saving never waits for the device: they are
    read here, by whoever writes the file (the writer thread for the periodic checkpoints)."""
    meta = dict(checkpoint["nst"])
    meta["evaluations"] = int(meta["evaluations"])
    initial = None if meta["initial_loss"] is None else float(meta["initial_loss"])
    meta["initial_loss"] = initial if initial is not None and math.isfinite(initial) else None
    return {**checkpoint, "nst": meta}


def merge(checkpoints: list[dict]) -> dict:
    """One batch checkpoint from the pictures' own (all at the same step: the sweep batches them so)."""
    out = dict(checkpoints[0])
    out["state_dict"] = {"target": torch.cat([c["state_dict"]["target"] for c in checkpoints])}
    out["optimizer_states"] = [_cat_rows([c["optimizer_states"][i] for c in checkpoints])
                               for i in range(len(checkpoints[0].get("optimizer_states", [])))]
    meta = dict(checkpoints[0]["nst"])
    for key in PER_PICTURE:
        meta[key] = [c["nst"].get(key) for c in checkpoints]
    out["nst"] = meta
    return out


def _cat_rows(values: list[Any]) -> Any:
    first = values[0]
    if torch.is_tensor(first) and first.dim() > 0:
        return torch.cat(values)
    if isinstance(first, dict):
        return {k: _cat_rows([v[k] for v in values]) for k in first}
    return first


PER_PICTURE = ("evaluations", "initial_loss")  # "nst" entries that differ between the pictures of a batch


class PairCheckpointIO(CheckpointIO):
    """Lightning's checkpoint plugin for a batch of pictures: one last.ckpt per picture's folder, written atomically.

    `save_checkpoint` ignores the path Lightning passes and writes every picture that `keep(b)` allows (a failed
    picture keeps none); `load_checkpoint` reads the pictures' files into one batch checkpoint. Inside
    `background()`, the files are written by a helper thread while training goes on (the periodic checkpoints:
    the rows are copied first, so later steps do not change what is written); `wait` waits for them, and
    `remove_checkpoint` (Lightning's Strategy.remove_checkpoint) too, before it removes a picture's file.
    `wandb_id(folder)` is the id of the W&B run of the picture in that folder when its file is written (None
    without one): the checkpoint keeps it, and does not know where it comes from (runner/wandb.saved_id).
    """

    def __init__(self, folders: list[str], keep: Optional[Callable[[int], bool]] = None,
                 inputs: Optional[list[dict]] = None,
                 wandb_id: Callable[[str], Optional[str]] = lambda folder: None):
        self.folders = folders
        self.keep = keep or (lambda b: True)
        self.inputs = inputs  # each picture's record of its inputs (job.inputs_record), kept in its checkpoint
        self.wandb_id = wandb_id
        self._in_background = False
        self._writer: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Future] = None

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        self.wait()
        kept = [b for b in range(len(self.folders)) if self.keep(b)]
        rows = [(self.folders[b], split(checkpoint, b)) for b in kept]
        if self.inputs is not None:
            for b, (_, row) in zip(kept, rows):
                row["nst"]["inputs"] = self.inputs[b]
        if not self._in_background:
            return self._write(rows)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nst-checkpoint")
        self._pending = self._writer.submit(self._write, rows)

    def _write(self, rows: list[tuple[str, dict]]) -> None:
        """Each row serialized in memory first, then written as any other output: torch.save writing to a full
        disk raises a RuntimeError ("unexpected pos") that names neither the file nor the problem, a plain write
        an OSError (ENOSPC) that atomic_write turns into an OutputError naming the file."""
        for folder, row in rows:
            row = as_numbers(row)
            row["nst"]["wandb_id"] = self.wandb_id(folder)  # the W&B run it goes on with
            buf = io.BytesIO()
            torch.save(row, buf)
            atomic_write(path_in(folder), lambda f: f.write(buf.getbuffer()))

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """The checkpoints saved inside are written by the helper thread."""
        self._in_background = True
        try:
            yield
        finally:
            self._in_background = False

    def wait(self) -> None:
        """Until the checkpoint being written is on disk (its error, such as a full disk, raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def teardown(self) -> None:
        self.wait()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def load_checkpoint(self, path, map_location=None, weights_only: Optional[bool] = True) -> dict:
        return merge([load(path_in(folder)) for folder in self.folders])

    def remove_checkpoint(self, path) -> None:
        """Remove one picture's file (a failed picture's: it would resume into the same failure), once the
        checkpoint being written in the background is on disk."""
        self.wait()
        if os.path.exists(path):
            os.unlink(path)


def load(path: str) -> dict:
    """A checkpoint written by this program, read safely, or a one-line ConfigError naming the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"resume: no checkpoint at {path} (an interrupted run writes it; "
                          f"drop resume=true to start over)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"resume: {path} is not a readable checkpoint ({load_failure(e, 160)})") from None
    meta = ckpt.get("nst") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "state_dict" not in ckpt:
        raise ConfigError(f"resume: {path} is not a checkpoint of this program")
    return ckpt


def check_resumable(ckpt: dict, path: str, optim_name: str, max_steps: int,
                    size_after: Callable[[int], tuple[int, int]]) -> int:
    """The step to resume from, or a ConfigError when this config cannot continue that checkpoint.

    `size_after(step)` is the (height, width) this config's image has after `step` steps."""
    meta = ckpt["nst"]
    step = int(meta["step"])
    if meta["optim"] != optim_name:
        raise ConfigError(f"resume: {path} was made with optim.name={meta['optim']}, this config has "
                          f"optim.name={optim_name}")
    if step >= max_steps:
        raise ConfigError(f"resume: {path} is already at step {step} of trainer.max_steps={max_steps}; "
                          f"raise trainer.max_steps to go on")
    h, w = size_after(step)  # (the next step may enter a new scale and upsample it, as an uninterrupted run does)
    saved = tuple(meta["shape"])
    if saved != (1, 3, h, w):
        raise ConfigError(f"resume: {path} holds a {saved[-1]}x{saved[-2]} image at step {step}, this config "
                          f"expects {w}x{h} there (keep data.size, data.content and scales.* as they were)")
    target = ckpt["state_dict"].get("target")
    if not torch.is_tensor(target) or tuple(target.shape) != saved or not torch.isfinite(target).all():
        raise ConfigError(f"resume: {path} does not hold a valid target image")
    return step


def check_inputs(ckpt: dict, path: str, record: dict, force: bool) -> Optional[str]:
    """A ConfigError naming what differs when this config's inputs (`record`, job.inputs_record) are not the
    checkpoint's: another content or style image, or another objective (layers, loss weights, weights, ...).
    With `force` the differences are allowed. Returns a warning for a checkpoint that records no inputs (written
    before they were recorded): it is resumed unchecked."""
    saved = ckpt["nst"].get("inputs")
    if not isinstance(saved, dict):
        return f"resume: {path} records no inputs (an older version wrote it): they are not checked"
    changes = []
    if saved.get("content") != record["content"]:
        changes.append("data.content is another image")
    if saved.get("styles") != record["styles"]:
        changes.append("data.style is another image" + ("s" if len(record["styles"]) > 1 else ""))
    before, now = saved.get("settings", {}), record["settings"]
    for key in now:
        if before.get(key) != now[key]:
            changes.append(f"{key} was {before.get(key)}, now {now[key]}")
    if changes and not force:
        raise ConfigError(f"resume: {path} was made with other inputs ({'; '.join(changes)}); add resume=force to "
                          f"continue it anyway, or drop resume=true to start over")
    return None
