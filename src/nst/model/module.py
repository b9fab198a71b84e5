"""The LightningModule: a batch of target images is the only parameter; the frozen VGG19 only describes images.

One module makes B pictures at once (B = 1 for `train.py`). Row b of the target has its own content, styles,
loss normalisers and (with L-BFGS) its own curvature pairs and step lengths, so a picture comes out the same
alone or in a batch. Coarse to fine: at each new scale the target is upsampled in place, the content and style
targets are recomputed at the new size, and the optimizer state is upsampled with it (Adam's moments, L-BFGS's
curvature pairs; `optim.carry_history=false` restarts L-BFGS instead).

The loss and its targets are one submodule (model/loss.py): every tensor a step needs is a parameter or
a buffer of this module, so it follows the module to any device and back.

A step never reads a number back from the device (on a GPU that would wait for all queued work). The loss
parts of the steps that are logged or shown, and the pictures' health (a NaN or Inf loss or image), are kept
on the device in `records` and `status()`, named by `record_names` and by status() itself; the Telemetry callback
moves them to the host in one transfer now and then. A picture whose loss or image stops being finite is put
back to its last finite image and frozen there; the host learns of it at the next transfer and fails that
picture alone.

Everything a run's outputs need from the device is read once, in `conclude()`, while the module is still on it:
Lightning's teardown moves the module to the CPU before `Trainer.fit` returns.
"""

from __future__ import annotations

import contextlib
import time
from typing import Optional

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import TrainingError
from ..images import fit_size, resize_longest, style_side, to_tensor
from .precision import exact_float32, no_autocast
from .batch import OptimizerSettings, Outcome, Picture, Recording
from .guides import batch_region_targets
from .loss import LossSettings, Objective
from .lbfgs import BatchLBFGS
from .schedule import Schedule
from . import tiling as tiles
from .vgg import VGG19Features

class StyleTransferModule(L.LightningModule):
    def __init__(self, *, extractor: VGG19Features, pictures: list[Picture], loss: LossSettings,
                 schedule: Schedule, optimizer: OptimizerSettings, recording: Recording,
                 tiling: Optional[tiles.Tiling] = None, style_grams: Optional[dict] = None):
        super().__init__()
        self.tiling = tiling  # None: every evaluation is of the whole image (model/tiling.py)
        self.automatic_optimization = False
        self.extractor = extractor
        self.pictures = pictures
        self.objective = Objective(loss, len(pictures))
        self.schedule = schedule
        self.optim = optimizer
        self.recording = recording
        first = [self.size_hw(0, p) for p in pictures]
        if len(set(first)) != 1 or len({tuple(self.size_hw(s, p) for s in range(len(schedule.sizes)))
                                        for p in pictures}) != 1:
            raise ValueError("the pictures of a batch must have the same size at every scale")
        self.target = torch.nn.Parameter(torch.cat([self._initial_image(p) for p in pictures]))
        b = len(pictures)
        # Per-picture state on the device (non-persistent buffers: they follow the module, never a checkpoint).
        for name, value in (("last_good", self.target.detach().clone()), ("alive", torch.ones(b, dtype=torch.bool)),
                            ("bad", torch.tensor([[-1.0, 0.0]]).repeat(b, 1)),  # the step it went bad at, its loss
                            ("evaluations", torch.zeros(b)), ("initial_loss", torch.full((b,), float("nan")))):
            self.register_buffer(name, value, persistent=False)
        self.records: list[tuple[int, torch.Tensor]] = []  # (step, [B, parts + 1]) awaiting transfer
        self.snapshots: list[tuple[int, torch.Tensor]] = []  # (steps done, [B, 3, H, W]) awaiting transfer
        self.scale_index = -1  # the scale of the content and style targets (-1: none computed yet)
        self.start_step = 0  # > 0 when resumed
        self.seconds_before = 0.0  # optimization time of the runs this one resumes
        self.fit_start: float | None = None
        self.outcome: Optional[Outcome] = None  # set by conclude()
        # (style image, side, float32) -> (the image, its Grams): a video's frames share one, computed once per clip
        self.style_grams = style_grams

    @property
    def batch_size(self) -> int:
        return len(self.pictures)

    @property
    def record_names(self) -> list[str]:
        """The columns of a record: the loss parts, then the evaluations so far."""
        return self.objective.settings.part_names + ["evaluations"]

    # ------------------------------------------------------------------ images and targets
    def size_hw(self, scale: int, picture: Picture | None = None) -> tuple[int, int]:
        w, h = fit_size((picture or self.pictures[0]).content.size, self.schedule.sizes[scale])
        return h, w

    def _initial_image(self, p: Picture) -> torch.Tensor:
        h, w = self.size_hw(0, p)
        if isinstance(p.init, torch.Tensor):  # a video frame's start: the previous stylized frame, warped
            init = p.init.detach().float().cpu()
            if tuple(init.shape[-2:]) != (h, w):
                init = F.interpolate(init, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
            return init.clone().contiguous()
        if isinstance(p.init, Image.Image):
            return to_tensor(p.init.resize((w, h), Image.Resampling.LANCZOS))
        if p.init == "noise":
            return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(p.seed))
        source = p.styles[0] if p.init == "style" else p.content
        return to_tensor(source.resize((w, h), Image.Resampling.LANCZOS))

    def content_at(self, scale: int) -> torch.Tensor:
        h, w = self.size_hw(scale)
        return torch.cat([to_tensor(p.content.resize((w, h), Image.Resampling.LANCZOS)) for p in self.pictures]
                         ).to(self.device)

    def style_at(self, style: Image.Image, longest: int) -> torch.Tensor:
        return to_tensor(resize_longest(style, longest, "style image")).to(self.device)

    def style_side(self, scale: int, picture: Picture | None = None) -> int:
        """The style images' longest side at this scale."""
        return style_side(self.schedule.sizes[scale], (picture or self.pictures[0]).style_scale)

    @torch.no_grad()
    def compute_targets(self, scale: int) -> None:
        """Content features and blended style Grams of every picture at this scale: in the training precision at
        the coarse scales, in float32 at the last one, so that the final float32 evaluation reuses them."""
        last = scale == len(self.schedule.sizes) - 1
        with no_autocast(self.device.type) if last else contextlib.nullcontext():
            self._compute_targets(scale)
        self.scale_index = scale

    def _compute_targets(self, scale: int) -> None:
        settings = self.objective.settings
        content = tiles.features(self.extractor, self.content_at(scale), settings.content_layers, self.tiling)
        if settings.regions:  # one guided Gram per region and style (Gatys et al. 2017)
            styles = [[self.style_at(s, self.style_side(scale, p)) for s in p.styles] for p in self.pictures]
            grams, guides, weights = batch_region_targets(self.pictures, styles, *self.size_hw(scale),
                                                          settings.style_layers, self.extractor, self.device)
            self.objective.set_targets(content, grams, *self.size_hw(scale), guides, weights)
            return
        grams: dict[str, list[torch.Tensor]] = {k: [] for k in settings.style_layers}
        cache = {} if self.style_grams is None else self.style_grams  # a style shared by pictures (or frames)
        exact = scale == len(self.schedule.sizes) - 1  # float32 targets there (compute_targets), not the training's
        for p in self.pictures:
            longest = self.style_side(scale, p)
            blended = {k: 0.0 for k in settings.style_layers}
            for weight, style in zip(p.blend, p.styles):
                key = (id(style), longest, exact)  # the entry keeps the image, so its id stays its own
                if key not in cache:
                    cache[key] = style, tiles.grams(self.extractor, self.style_at(style, longest),
                                                    settings.style_layers, self.tiling)
                for k in settings.style_layers:
                    blended[k] = blended[k] + weight * cache[key][1][k].to(self.device)
            for k in settings.style_layers:
                grams[k].append(blended[k])
        # A weighted sum of losses against several Grams has the gradient of one loss against their blend.
        self.objective.set_targets(content, {k: torch.cat(v) for k, v in grams.items()}, *self.size_hw(scale))

    def losses(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-picture total loss [B] and its named parts (each [B], weighted as they enter the total)."""
        if self.tiling is not None and self.tiling.blocks(*image.shape[-2:]):  # block by block (model/tiling.py)
            parts = tiles.evaluate(self.extractor, self.objective, image, self.tiling.blocks(*image.shape[-2:]),
                                   self.tiling.exact)
        else:
            parts = self.objective(self.extractor(image, self.objective.settings.layers), image)
        return parts["loss"], parts

    # ------------------------------------------------------------------ scales
    def enter_scale(self, scale: int) -> None:
        """Upsample the target to this scale, recompute targets, carry or restart the optimizer state."""
        h, w = self.size_hw(scale)
        if tuple(self.target.shape[-2:]) != (h, w):
            old_shape = self.target.shape
            with torch.no_grad():
                up = F.interpolate(self.target.data, size=(h, w), mode="bicubic", align_corners=False)
                self.target.data = up.clamp(0, 1).contiguous()
            self._resize_optimizer_state(old_shape)
        self.compute_targets(scale)
        self.last_good = self.target.detach().clone()

    def _resize_optimizer_state(self, old_shape: torch.Size) -> None:
        if self._trainer is None:
            return
        opt = self.optimizers().optimizer
        if isinstance(opt, BatchLBFGS):
            opt.resize(old_shape) if self.optim.carry_history else opt.reset()
            return
        h, w = self.target.shape[-2:]
        for state in opt.state.values():  # Adam: upsample the moments (crowsonkb's carry-over)
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = F.interpolate(state[key], size=(h, w), mode="bilinear",
                                               align_corners=False).clamp_min(0 if key == "exp_avg_sq" else -1e30)

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self) -> None:
        self.fit_start = time.time()
        self.start_step = self.global_step

    @property
    def optimize_seconds(self) -> float:
        """Optimization time so far, counting the interrupted runs this one resumed."""
        return self.seconds_before + (time.time() - self.fit_start if self.fit_start is not None else 0.0)

    def configure_optimizers(self):
        o = self.optim
        if o.name == "lbfgs":
            # One iteration per step: we run the steps the user asked for. Each picture's first step searches
            # along the gradient (torch's first-step length, min(1, 1/|g|_1) * lr, is tiny for 10^5..10^6
            # pixels); after it, unit steps need one evaluation each, at later scales too (resize).
            return BatchLBFGS([self.target], lr=o.lr, history_size=o.history, line_search_evals=o.line_search_evals)
        return torch.optim.Adam([self.target], lr=o.lr)

    def training_step(self, batch, batch_idx):
        step = self.global_step
        scale = self.schedule.scale_at(step)
        if scale != self.scale_index:
            self.enter_scale(scale)
        opt = self.optimizers()
        first: dict[str, torch.Tensor] = {}
        keep = self.alive.to(self.target.dtype)[:, None, None, None]

        def closure():
            opt.zero_grad()
            loss, parts = self.losses(self.target)
            self.manual_backward(loss.sum())
            self.target.grad.mul_(keep)  # a failed picture stays where it is
            if not first:  # the parts at the start of the step (their graph is freed by the backward pass)
                first.update(parts)
            return loss.detach()

        try:
            opt.step(closure=closure)
        except RuntimeError as e:  # e.g. an optim.lr beyond float32 in the update itself
            if "overflow" not in str(e):
                raise
            raise TrainingError(f"the update overflowed float32 at step {step} (lower optim.lr)") from None
        with torch.no_grad():
            if self.optim.name == "adam":
                self.target.clamp_(0, 1)
            inner = opt.optimizer
            self.evaluations += inner.last_evaluations if isinstance(inner, BatchLBFGS) else 1.0
            self._check_health(step, first["loss"])
            if step == self.start_step == 0:
                self.initial_loss.copy_(first["loss"])
            self._record(step, first)

    @torch.no_grad()
    def _check_health(self, step: int, loss: torch.Tensor) -> None:
        """A picture whose loss (at the start of the step) or image (after it) is not finite goes back to its last
        finite image, the one after `step` steps, and stays there; the step and its loss make the error message."""
        finite = torch.isfinite(loss + self.target.sum((1, 2, 3)))  # a sum is finite iff every term is
        newly_bad = self.alive > finite  # alive and not finite
        self.bad = torch.where(newly_bad[:, None], torch.stack([torch.full_like(loss, step), loss], 1), self.bad)
        self.alive &= finite
        torch.where(self.alive[:, None, None, None], self.target, self.last_good, out=self.target.data)
        self.last_good.copy_(self.target)

    def _record(self, step: int, parts: dict[str, torch.Tensor]) -> None:
        rec = self.recording
        if rec.logged(step) or rec.shown(step):
            columns = [parts[k].float() for k in self.objective.settings.part_names] + [self.evaluations]
            self.records.append((step, torch.stack(columns, 1)))
        if rec.image_after(step):
            self.snapshots.append((step + 1, self.target.detach().clone()))

    def status(self) -> tuple[list[str], torch.Tensor]:
        """Each picture's health on the device, read with the records: the column names and [B, columns] (alive,
        the step it went bad at, that step's loss, evaluations)."""
        blocks = {("alive",): self.alive[:, None].float(), ("bad_step", "bad_loss"): self.bad,
                  ("evaluations",): self.evaluations[:, None]}
        return [name for names in blocks for name in names], torch.cat(list(blocks.values()), 1)

    # ------------------------------------------------------------------ checkpoints (see runner/checkpoint.py)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """A batch's checkpoint, with per-picture lists in "nst"; runner/checkpoint.py splits it into one file
        per picture. L-BFGS keeps no history (2 x optim.history image-sized vectors): a resumed run restarts
        its curvature estimate with the line search that every fresh start does. These are copies: the live
        optimizer is untouched. The per-picture numbers stay tensors here (reading them would wait for the
        device): runner/checkpoint.py turns them into numbers when it writes the files, in its writer thread."""
        checkpoint["nst"] = {"format": 1, "step": int(self.global_step), "shape": [1, *self.target.shape[1:]],
                             "optim": self.optim.name, "evaluations": self.evaluations.clone(),
                             "initial_loss": self.initial_loss.clone(), "seconds": self.optimize_seconds}
        if self.optim.name == "lbfgs":
            for state in checkpoint.get("optimizer_states", []):
                state["state"] = {}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Before the state_dict is loaded: give the target the checkpoint's shape (it may be a later scale)."""
        saved = checkpoint["state_dict"]["target"]
        meta = checkpoint.get("nst", {})
        with torch.no_grad():
            self.target.data = torch.empty(saved.shape, dtype=self.target.dtype, device=self.target.device)
        self.last_good = saved.detach().to(self.target.dtype).clone()
        self.scale_index = -1  # the first step recomputes the content and style targets at its scale
        self.evaluations.copy_(torch.tensor([float(e) for e in meta.get("evaluations", [0] * self.batch_size)]))
        self.initial_loss.copy_(torch.tensor([float("nan") if v is None else v
                                              for v in meta.get("initial_loss", [None] * self.batch_size)]))
        self.seconds_before = float(meta.get("seconds", 0.0))
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:  # this config's settings win over the checkpoint's
                group["lr"] = self.optim.lr
                if self.optim.name == "lbfgs":
                    group["history_size"] = self.optim.history
                    group["line_search_evals"] = self.optim.line_search_evals

    @torch.no_grad()
    def final_parts(self, image: torch.Tensor | None = None) -> torch.Tensor:
        """[B, parts] float32 loss parts (named by the objective's part_names) of each picture (default: the
        target) at the last scale, against float32 targets, on the device.

        The last scale's targets are float32 in any training precision (compute_targets), so final numbers are
        comparable across precisions and with other tools' images; a run that stopped before the last scale
        computes them here. TF32 is off for it: float32 means float32 on any GPU.
        """
        image = self.target if image is None else image
        with no_autocast(self.device.type), exact_float32():
            if self.scale_index != len(self.schedule.sizes) - 1:
                self.compute_targets(len(self.schedule.sizes) - 1)
            _, parts = self.losses(image.float())
        return torch.stack([parts[k] for k in self.objective.settings.part_names], 1)

    def evaluate(self, image: torch.Tensor | None = None) -> list[dict[str, float]]:
        """final_parts as numbers: one dict per picture (a read from the device; for tools, not the loop)."""
        names = self.objective.settings.part_names
        return [dict(zip(names, row)) for row in self.final_parts(image).tolist()]

    def free_lbfgs_state(self) -> None:
        """Drop L-BFGS's state (2 x optim.history image-sized vectors per picture, which no checkpoint keeps) at the
        end of training, instead of letting Lightning's teardown copy it to host memory: about 3 GB at 2048 px
        for two pictures with history 20."""
        if self._trainer is not None and isinstance(self.optimizers().optimizer, BatchLBFGS):
            self.optimizers().optimizer.state.clear()

    @torch.no_grad()
    def conclude(self) -> Outcome:
        """Everything the outputs need from the device, in one transfer: the final float32 loss parts, the initial
        losses, evaluations, the images and the peak memory. Called at the end of training (on_train_end), while
        the module is still on its device; nothing reads the device after it."""
        names = self.objective.settings.part_names
        numbers = torch.cat([self.final_parts(), self.initial_loss[:, None], self.evaluations[:, None]], 1)
        rows = [dict(zip(names + ["initial_loss", "evaluations"], row)) for row in numbers.cpu().tolist()]
        images = self.target.detach().cpu()
        peak = None
        if self.device.type == "cuda":
            peak = round(torch.cuda.max_memory_allocated(self.device) / 2**20)
        self.outcome = Outcome(parts=[{k: r[k] for k in names} for r in rows],
                               initial_loss=[None if r["initial_loss"] != r["initial_loss"] else r["initial_loss"]
                                             for r in rows],
                               evaluations=[int(r["evaluations"]) for r in rows], images=images,
                               seconds=self.optimize_seconds, peak_memory_mb=peak)
        return self.outcome
