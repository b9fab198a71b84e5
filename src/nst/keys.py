"""Which config keys matter, said once: the keys that define the objective a picture minimizes, which its
checkpoint records (a resume with other values would optimize a blend: runner/checkpoint.check_inputs), and the
keys that change nothing in a result, which W&B's setting digest (runner/wandb.py) and a sweep's check of a
finished pair (sweep/plan.py) leave out."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from .config import layers_of

# The loss, its layers and weights, and the images as the optimization sees them (style blend and scale, colour).
OBJECTIVE_KEYS = ("model.weights", "model.pooling", "model.content_layers", "model.style_layers",
                  "model.style_layer_weights", "loss.content_weight", "loss.style_weight", "loss.tv_weight",
                  "loss.normalize", "data.style_weights", "data.style_scale", "color.preserve")
# How a run is logged and shown, whether it resumes, and which device runs it: a result made with other values of
# these is the same result. (A key and everything under it: "logger" is logger.*.)
NOT_RESULT_KEYS = ("logger", "resume", "trainer.devices", "trainer.accelerator", "trainer.enable_progress_bar",
                   "trainer.cudnn_benchmark")


def objective_settings(cfg: DictConfig) -> dict:
    """The values of OBJECTIVE_KEYS as plain data, the layers resolved from their preset."""
    content_layers, style_layers = layers_of(cfg)
    resolved = {"model.content_layers": content_layers, "model.style_layers": style_layers}
    out = {}
    for key in OBJECTIVE_KEYS:
        value = resolved[key] if key in resolved else OmegaConf.select(cfg, key, throw_on_missing=True)
        out[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if cfg.masks.content:  # regions change the objective; a run without masks keeps the digests it had
        out["masks"] = OmegaConf.to_container(cfg.masks)
    return out
