"""The LightningModule: the target image is the only parameter; the frozen VGG19 only describes images.

Optimization is manual so that one module can run coarse-to-fine: at each new scale the target is
upsampled in place (the optimizer keeps the same parameter object), the content/style targets are recomputed
at the new size, and the optimizer state is carried (Adam) or restarted (L-BFGS, whose history is tied to
the old size).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import TrainingError
from ..images import fit_size, resize_longest, style_side, to_tensor
from .losses import content_loss, gatys_style_loss, gram, tv_loss
from .vgg import VGG19Features

LINE_SEARCH = "strong_wolfe"


@dataclass
class Objective:
    """What is optimized: layers, weights, and how the loss is normalised."""
    content_layers: list[str]
    style_layers: list[str]
    style_layer_weights: list[float]  # sums to 1
    content_weight: float
    style_weight: float
    tv_weight: float
    normalize: bool


@dataclass
class Schedule:
    sizes: list[int]  # longest side per scale, smallest first
    steps: list[int]  # steps per scale

    def scale_at(self, step: int) -> int:
        total = 0
        for i, n in enumerate(self.steps):
            total += n
            if step < total:
                return i
        return len(self.steps) - 1


class StyleTransferModule(L.LightningModule):
    def __init__(self, extractor: VGG19Features, content: Image.Image, styles: list[Image.Image],
                 style_blend: list[float], objective: Objective, schedule: Schedule, init: str | Image.Image,
                 optim_name: str = "lbfgs", lr: float = 1.0, history: int = 50, style_scale: float = 1.0,
                 seed: int = 0, log_every: int = 1):
        super().__init__()
        self.automatic_optimization = False
        self.extractor = extractor
        self.content_image = content
        self.style_images = styles
        self.style_blend = [w / sum(style_blend) for w in style_blend]
        self.objective = objective
        self.schedule = schedule
        self.optim_name, self.lr, self.history = optim_name, lr, history
        self.style_scale = style_scale
        self.log_every = log_every
        self.evaluations = 0
        self.initial_loss: float | None = None  # the loss of the initial image, for "how far did it fall"
        self.scale_index = -1  # no targets computed yet
        self.last_parts: dict[str, float] = {}
        self.target = torch.nn.Parameter(self._initial_image(init, seed, schedule.sizes[0]))
        self.last_good = self.target.detach().clone()  # the image after `good_steps` finite steps
        self.good_steps = 0
        self.seconds_before = 0.0  # optimization time of the runs this one resumes
        self.fit_start: float | None = None

    # ------------------------------------------------------------------ images and targets
    def _initial_image(self, init: str | Image.Image, seed: int, longest: int) -> torch.Tensor:
        w, h = fit_size(self.content_image.size, longest)
        if isinstance(init, Image.Image):
            return to_tensor(init.resize((w, h), Image.Resampling.LANCZOS))
        if init == "noise":
            return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))
        if init == "style":
            return to_tensor(self.style_images[0].resize((w, h), Image.Resampling.LANCZOS))
        return to_tensor(self.content_image.resize((w, h), Image.Resampling.LANCZOS))

    def size_hw(self, scale: int) -> tuple[int, int]:
        w, h = fit_size(self.content_image.size, self.schedule.sizes[scale])
        return h, w

    def content_at(self, scale: int) -> torch.Tensor:
        h, w = self.size_hw(scale)
        return to_tensor(self.content_image.resize((w, h), Image.Resampling.LANCZOS)).to(self.device)

    def _style_tensors(self, scale: int) -> list[torch.Tensor]:
        longest = style_side(self.schedule.sizes[scale], self.style_scale)
        return [to_tensor(resize_longest(s, longest, "style image")).to(self.device) for s in self.style_images]

    @torch.no_grad()
    def compute_targets(self, scale: int) -> None:
        """Content features and blended style Grams at this scale's size, in the training precision."""
        obj = self.objective
        content_feats = self.extractor(self.content_at(scale), obj.content_layers)
        self.content_targets = {k: v.float() for k, v in content_feats.items()}
        grams = {k: 0.0 for k in obj.style_layers}
        for weight, style in zip(self.style_blend, self._style_tensors(scale)):
            feats = self.extractor(style, obj.style_layers)
            with torch.autocast(self.device.type, enabled=False):
                for k in obj.style_layers:
                    grams[k] = grams[k] + weight * gram(feats[k])
        # A weighted sum of losses against several Grams has the gradient of one loss against their blend.
        self.style_targets = grams
        # Normalisers: a layer's loss is divided by what it would be for an all-zero feature map.
        self.content_norm = {k: (v ** 2).mean().clamp_min(1e-12) if obj.normalize else torch.tensor(1.0)
                             for k, v in self.content_targets.items()}
        self.style_norm = {k: gatys_style_loss(torch.zeros_like(g), g, g.shape[-1]).clamp_min(1e-12)
                           if obj.normalize else torch.tensor(1.0) for k, g in grams.items()}

    def losses(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts (weighted as they enter the total) for an RGB [0, 1] image."""
        obj = self.objective
        layers = list(dict.fromkeys(obj.content_layers + obj.style_layers))
        feats = self.extractor(image, layers)
        parts: dict[str, torch.Tensor] = {}
        with torch.autocast(self.device.type, enabled=False):
            c = sum(content_loss(feats[k], self.content_targets[k]) / self.content_norm[k]
                    for k in obj.content_layers) / len(obj.content_layers)
            style_total = 0.0
            for k, w in zip(obj.style_layers, obj.style_layer_weights):
                g = gram(feats[k])
                layer = w * gatys_style_loss(g, self.style_targets[k], g.shape[-1]) / self.style_norm[k]
                parts[f"style/{k}"] = obj.style_weight * layer
                style_total = style_total + layer
            t = tv_loss(image.float()) if obj.tv_weight > 0 else image.new_zeros(())
            parts["content_loss"] = obj.content_weight * c
            parts["style_loss"] = obj.style_weight * style_total
            parts["tv_loss"] = obj.tv_weight * t
            total = parts["content_loss"] + parts["style_loss"] + parts["tv_loss"]
        parts["loss"] = total
        return total, parts

    # ------------------------------------------------------------------ scales
    def enter_scale(self, scale: int) -> None:
        """Upsample the target to this scale, recompute targets, carry or restart the optimizer state."""
        h, w = self.size_hw(scale)
        if tuple(self.target.shape[-2:]) != (h, w):
            with torch.no_grad():
                up = F.interpolate(self.target.data, size=(h, w), mode="bicubic", align_corners=False)
                self.target.data = up.clamp(0, 1).contiguous()
            self._resize_optimizer_state(h, w)
        self.compute_targets(scale)
        self.scale_index = scale
        self.last_good = self.target.detach().clone()

    def _resize_optimizer_state(self, h: int, w: int) -> None:
        if self._trainer is None:
            return
        opt = self.optimizers().optimizer
        if isinstance(opt, torch.optim.LBFGS):
            opt.state.clear()  # curvature pairs of another size are meaningless
            opt._numel_cache = None
            opt.param_groups[0]["line_search_fn"] = LINE_SEARCH
            return
        for state in opt.state.values():  # Adam: upsample the moments (crowsonkb's carry-over)
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = F.interpolate(state[key], size=(h, w), mode="bilinear",
                                               align_corners=False).clamp_min(0 if key == "exp_avg_sq" else -1e30)

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self) -> None:
        self.fit_start = time.time()

    @property
    def optimize_seconds(self) -> float:
        """Optimization time so far, counting the interrupted runs this one resumed."""
        return self.seconds_before + (time.time() - self.fit_start if self.fit_start is not None else 0.0)

    def configure_optimizers(self):
        if self.optim_name == "lbfgs":
            # One iteration per step and no early stop: we run the steps the user asked for. The first step
            # of each scale uses a strong-Wolfe line search (the plain rule makes it vanishingly small for
            # 10^5..10^6 pixels and L-BFGS then never recovers); after it, unit steps need one evaluation each.
            return torch.optim.LBFGS([self.target], lr=self.lr, max_iter=1, history_size=self.history,
                                     tolerance_grad=0.0, tolerance_change=0.0, line_search_fn=LINE_SEARCH)
        return torch.optim.Adam([self.target], lr=self.lr)

    def training_step(self, batch, batch_idx):
        step = self.global_step
        scale = self.schedule.scale_at(step)
        if scale != self.scale_index:
            self.enter_scale(scale)
        opt = self.optimizers()
        box: dict[str, dict[str, torch.Tensor]] = {}

        def closure():
            opt.zero_grad()
            loss, parts = self.losses(self.target)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {loss.item()} at step {step} "
                                    f"(lower optim.lr or the loss weights)")
            self.manual_backward(loss)
            self.evaluations += 1
            if self.initial_loss is None:
                self.initial_loss = loss.item()
            if "parts" not in box:
                box["parts"] = parts
            return loss

        try:
            opt.step(closure=closure)
        except RuntimeError as e:  # e.g. an optim.lr beyond float32 in the update itself
            if "overflow" not in str(e):
                raise
            raise TrainingError(f"the update overflowed float32 at step {step} (lower optim.lr)") from None
        if self.optim_name == "lbfgs":
            opt.optimizer.param_groups[0]["line_search_fn"] = None
        if self.optim_name == "adam":
            with torch.no_grad():
                self.target.clamp_(0, 1)
        if not torch.isfinite(self.target).all():
            raise TrainingError(f"the image became NaN/Inf at step {step} (lower optim.lr or the loss weights)")
        self.last_good = self.target.detach().clone()
        self.good_steps = step + 1
        self.last_parts = {k: float(v.detach()) for k, v in box["parts"].items()}
        # The progress bar gets the loss through self.log; the logger gets every part directly (Lightning's
        # self.log bookkeeping per key costs more than the loss terms themselves at small sizes).
        self.log("loss", self.last_parts["loss"], prog_bar=True, logger=False, on_step=True)
        if self.logger is not None and (step % self.log_every == 0 or step + 1 == self.trainer.max_steps):
            metrics = {**self.last_parts, "scale": float(self.schedule.sizes[scale]),
                       "evaluations": float(self.evaluations)}
            self.logger.log_metrics(metrics, step=step)

    # ------------------------------------------------------------------ checkpoints (see checkpoint.py)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nst"] = {"format": 1, "step": int(self.global_step), "shape": list(self.target.shape),
                             "optim": self.optim_name, "evaluations": int(self.evaluations),
                             "initial_loss": self.initial_loss, "seconds": self.optimize_seconds}
        if self.optim_name == "lbfgs":
            # Drop the history (2 x optim.history image-sized vectors): a resumed run restarts its curvature
            # estimate, with the line search that every fresh start needs. These are copies: the live
            # optimizer is untouched.
            for state in checkpoint.get("optimizer_states", []):
                state["state"] = {}
                for group in state["param_groups"]:
                    group["line_search_fn"] = LINE_SEARCH

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Before the state_dict is loaded: give the target the checkpoint's shape (it may be a later scale)."""
        saved = checkpoint["state_dict"]["target"]
        meta = checkpoint.get("nst", {})
        with torch.no_grad():
            self.target.data = torch.empty(saved.shape, dtype=self.target.dtype, device=self.target.device)
        self.last_good = saved.detach().to(self.target.dtype).clone()
        self.good_steps = int(meta.get("step", 0))
        self.scale_index = -1  # the first step recomputes the content and style targets at its scale
        self.evaluations = int(meta.get("evaluations", 0))
        self.initial_loss = meta.get("initial_loss")
        self.seconds_before = float(meta.get("seconds", 0.0))
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:  # this config's settings win over the checkpoint's
                group["lr"] = self.lr
                if self.optim_name == "lbfgs":
                    group["history_size"] = self.history

    @torch.no_grad()
    def evaluate(self, image: torch.Tensor | None = None) -> dict[str, float]:
        """Float32 loss parts of an image (default: the target) at the last scale, against float32 targets.

        Reduced-precision training computes its targets in that precision; recomputing them here makes final
        numbers comparable across precisions and with other tools' images.
        """
        image = self.target if image is None else image
        with torch.autocast(self.device.type, enabled=False):
            self.compute_targets(len(self.schedule.sizes) - 1)
            _, parts = self.losses(image.float())
        return {k: float(v) for k, v in parts.items()}

