"""Weights & Biases: choosing the mode without ever hanging, and starting one run per picture."""

from __future__ import annotations

import netrc
import os
import warnings
from concurrent.futures import Future
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


def start_run(cfg: DictConfig, run_dir: str, extra_config: Optional[dict] = None):
    """A started W&B run writing under `run_dir/wandb`, or None when logging is disabled.

    Runs are independent (`reinit="create_new"`): a batch of pictures has one open run per picture, and a
    sweep process opens and closes many. A failed online start falls back to offline with a warning.
    """
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    import wandb  # only when logging: it takes half a second to import

    os.environ.setdefault("WANDB_SILENT", "true")
    config = OmegaConf.to_container(cfg, resolve=True)
    config.update(extra_config or {})
    kwargs = dict(project=cfg.logger.project, name=cfg.logger.name, group=cfg.logger.group,
                  job_type=cfg.logger.job_type, tags=list(cfg.logger.tags), dir=run_dir, config=config,
                  reinit="create_new")
    os.makedirs(run_dir, exist_ok=True)
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, console="off"), **kwargs)
    except Exception as e:
        if mode != "online":
            raise
        warnings.warn(f"W&B online start failed ({type(e).__name__}); logging offline instead", stacklevel=2)
        return wandb.init(mode="offline", settings=wandb.Settings(console="off"), **kwargs)


def finish(run) -> None:
    """Close a W&B run (flushes an offline run's file); `run` may be the Future of one still starting."""
    if isinstance(run, Future):
        try:
            run = run.result()
        except Exception:  # it never started: nothing to close (the error shows where the run was needed)
            return
    if run is not None:
        run.finish()
