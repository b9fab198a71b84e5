"""Weights & Biases: choosing the mode without ever hanging, and building the Lightning logger."""

from __future__ import annotations

import netrc
import os
import warnings
from typing import Optional

from omegaconf import DictConfig, OmegaConf


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE if set, else online with credentials, else offline (never a login prompt)."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled", "dryrun", "run"):
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    return "online" if has_wandb_credentials() else "offline"


def make_logger(cfg: DictConfig, run_dir: str, extra_config: Optional[dict] = None):
    """A started WandbLogger writing under `run_dir/wandb`, or None when logging is disabled."""
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    import wandb

    os.environ["WANDB_MODE"] = mode  # WandbLogger(offline=...) would override a user's WANDB_MODE
    os.environ.setdefault("WANDB_SILENT", "true")
    config = OmegaConf.to_container(cfg, resolve=True)
    config.update(extra_config or {})
    kwargs = dict(project=cfg.logger.project, name=cfg.logger.name, group=cfg.logger.group,
                  job_type=cfg.logger.job_type, tags=list(cfg.logger.tags), save_dir=run_dir, config=config,
                  settings=wandb.Settings(init_timeout=60, console="off"))
    os.makedirs(run_dir, exist_ok=True)
    logger = _wandb_logger(mode, kwargs)
    try:
        logger.experiment  # start the run now, so a network problem shows here and not mid-training
    except Exception as e:
        if mode != "online":
            raise
        warnings.warn(f"W&B online start failed ({type(e).__name__}); logging offline instead", stacklevel=2)
        os.environ["WANDB_MODE"] = "offline"
        logger = _wandb_logger("offline", kwargs)
        logger.experiment
    return logger


def _wandb_logger(mode: str, kwargs: dict):
    from lightning.pytorch.loggers import WandbLogger
    logger = WandbLogger(mode=mode, **kwargs)
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it is obsolete
    return logger


def finish(logger) -> None:
    """Close the W&B run: a second run in the same process would otherwise reuse it."""
    if logger is not None:
        import wandb
        logger.experiment.finish()
        wandb.finish()
