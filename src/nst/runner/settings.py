"""A run's settings, resolved once from its config: what every part of a run (module, Trainer, memory check,
outputs) reads instead of deriving it again from the raw keys."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from ..config import scale_sizes, steps_per_scale
from .hardware import resolve_accelerator, resolve_precision
from .memory import history_units


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]  # the longest side at each scale, smallest first, ending at data.size
    steps: tuple[int, ...]  # the steps at each scale (trainer.max_steps in all)
    accelerator: str  # trainer.accelerator with auto resolved: gpu where torch sees one, else cpu
    precision: str  # trainer.precision as Lightning takes it, auto resolved for the accelerator
    history: int  # image-sized vector pairs the optimizer keeps: L-BFGS's history, 1 for Adam

    @property
    def cpu(self) -> bool:
        return self.accelerator == "cpu"


def settings_of(cfg: DictConfig) -> Settings:
    """The settings of a run of `cfg` (a ConfigError when trainer.max_steps is too few for the scales)."""
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    return Settings(sizes=tuple(scale_sizes(cfg)), steps=tuple(steps_per_scale(cfg)), accelerator=accelerator,
                    precision=resolve_precision(str(cfg.trainer.precision), accelerator),
                    history=history_units(cfg.optim.name, cfg.optim.history))
