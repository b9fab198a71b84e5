"""Weights & Biases, the one module that imports wandb: choosing the mode without ever hanging, one W&B run per
run (kept across resumes by the id in `output.dir/wandb_id`), what it logs (loss parts, image grids, videos, the
sweep's table), what its summary and config hold, its artifacts, and how it ends. wandb itself is imported only
when something is logged: it takes half a second to import."""

from __future__ import annotations

import glob
import hashlib
import json
import netrc
import os
import re
import secrets
import socket
import stat
import string
import sys
import threading
from concurrent.futures import Future
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..keys import NOT_RESULT_KEYS

ID_FILE = "wandb_id"  # beside a run's outputs: the W&B run a resumed run goes on with
PROBE_TIMEOUT = 3.0  # seconds to reach the W&B server before logging offline instead
LOSS_KEYS = ("loss", "content_loss", "style_loss", "tv_loss")
# Keys that do not change a picture, and the output and sweep sections (the artifact's name shows the paths):
# left out of its digest.
NOT_SETTING_KEYS = NOT_RESULT_KEYS + ("output", "sweep")


def has_wandb_credentials() -> bool:
    # netrc by hand, not wandb.login(prompt=False): that is only in recent wandb and takes seconds.
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(base_url()).hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError, TypeError):
        return False


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE if set, else online with credentials, else offline (never a login prompt)."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled", "dryrun", "run"):
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    return "online" if has_wandb_credentials() else "offline"


_probe_lock = threading.Lock()
_unreachable: dict[str, Optional[str]] = {}  # server -> why it cannot be reached (None: it can), once a process


def unreachable() -> Optional[str]:
    """Why the W&B server (or the HTTPS proxy in the way) does not take a TCP connection within PROBE_TIMEOUT
    seconds, or None when it does: a machine without network learns it in a moment, not after wandb's minute."""
    url = base_url()
    scheme = "https" if url.startswith("https") else "http"
    proxy = os.environ.get(f"{scheme.upper()}_PROXY") or os.environ.get(f"{scheme}_proxy")
    if urlsplit(url).hostname in ("localhost", "127.0.0.1", "::1"):
        proxy = None
    parts = urlsplit(proxy or url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    with _probe_lock:
        if url not in _unreachable:
            try:
                socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
                _unreachable[url] = None
            except OSError as e:
                _unreachable[url] = f"cannot reach {host}:{port} ({e.strerror or type(e).__name__})"
                note(f"W&B: {_unreachable[url]}; logging offline (wandb sync uploads the runs later)")
    return _unreachable[url]


def note(line: str, file=None) -> None:
    print(line, file=file or sys.stderr, flush=True)


def flat(config: dict, prefix: str = "") -> dict:
    """{"loss": {"style_weight": 3}} -> {"loss.style_weight": 3}: the keys a W&B sweep agent sets."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def used(cfg: DictConfig) -> dict:
    """What `auto` and the defaults became on this machine, for the dashboard to filter on."""
    import torch

    from .hardware import describe_device, resolve_accelerator, resolve_precision
    accelerator = resolve_accelerator(cfg.trainer.accelerator)
    index = None
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        # The run's own device (a sweep pins trainer.devices=[i]), not current_device(): W&B runs start in
        # another thread, whose current device is 0.
        devices = cfg.trainer.devices
        index = int(devices[0]) if isinstance(devices, ListConfig) and len(devices) else 0
        device = torch.cuda.get_device_name(index)
    else:
        device = describe_device() if accelerator == "cpu" else accelerator
    out = {"accelerator": accelerator, "device": device,
           "precision": resolve_precision(str(cfg.trainer.precision), accelerator)}
    if index is not None:
        out["device_index"] = index
    return out


def new_id() -> str:
    """8 lowercase letters and digits, as W&B makes them."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def valid_id(run_id: Any) -> Optional[str]:
    """`run_id` when it can be a W&B run id, else None."""
    return run_id if isinstance(run_id, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id) else None


def read_id(path: str) -> Optional[str]:
    """The run id kept in `path`, or None: only a regular file is read (a FIFO would block), and at most 256 bytes
    of it; bytes that are no id (binary garbage, another text) are no id."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once and is then refused
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return valid_id(f.read(256).decode("utf-8", "replace").strip())
        except OSError:
            return None


def saved_id(run_dir: str) -> Optional[str]:
    """The id of the W&B run whose outputs are in run_dir (its ID_FILE), or None."""
    return read_id(os.path.join(run_dir, ID_FILE))


def write_id(path: str, run_id: str) -> None:
    from ..files import save_text
    try:
        save_text(run_id + "\n", path)
    except OSError as e:
        note(f"W&B: cannot keep the run id in {path} ({e}); a resumed run will start a new W&B run")


def checkpoint_id(run_dir: str) -> Optional[str]:
    """The W&B run id kept in run_dir's last.ckpt (for a folder whose wandb_id file was lost)."""
    from .checkpoint import load, path_in
    try:
        return valid_id(load(path_in(run_dir))["nst"].get("wandb_id"))
    except Exception:  # no checkpoint, or not one of ours: a new run
        return None


def start_run(cfg: DictConfig, run_dir: str, extra_config: Optional[dict] = None, *,
              config: Optional[dict] = None, id_file: str = ID_FILE, resume: Optional[bool] = None):
    """A started W&B run writing under `run_dir/wandb`, or None when logging is disabled.

    With cfg.resume (or `resume=True`) and an id in `run_dir/id_file`, the run goes on with that W&B run;
    otherwise a new run starts and its id is written there. `config` replaces the run's config (default: the
    resolved cfg, plus extra_config and what `auto` became). Runs are independent (`reinit="create_new"`): a batch
    of pictures has one open run per picture, and a sweep process opens and closes many. When the server cannot
    be reached (or an online start fails), the run is offline, said in one line.
    """
    mode = resolve_mode(cfg.logger.mode)
    if mode == "disabled":
        return None
    if mode == "online" and unreachable():
        mode = "offline"
    import wandb  # only when logging: it takes half a second to import

    os.environ.setdefault("WANDB_SILENT", "true")
    if config is None:
        config = OmegaConf.to_container(cfg, resolve=True)
        config.update(extra_config or {})
        config["used"] = used(cfg)
        if os.environ.get("WANDB_SWEEP_ID"):  # under a sweep agent: its flat keys and ours are the same keys
            config = flat(config)
    id_path = os.path.join(run_dir, id_file)
    run_id = None
    if cfg.resume if resume is None else resume:
        run_id = read_id(id_path) or checkpoint_id(run_dir)
    logger = cfg.logger
    kwargs = dict(project=logger.project or os.environ.get("WANDB_PROJECT") or "neural-style",
                  entity=logger.get("entity") or None, notes=logger.get("notes") or None, name=logger.name,
                  group=logger.group, job_type=logger.job_type, tags=list(logger.tags), dir=run_dir,
                  config=config, reinit="create_new", id=run_id or new_id(), resume="allow")
    os.makedirs(run_dir, exist_ok=True)
    try:
        run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, console="wrap"), **kwargs)
    except Exception as e:
        if mode != "online":
            raise
        note(f"W&B: online start failed ({type(e).__name__}: {str(e).strip()[:200]}); logging offline instead")
        run = wandb.init(mode="offline", settings=wandb.Settings(console="wrap"), **kwargs)
    write_id(id_path, run.id)  # (under a sweep agent, the agent's id)
    for key in LOSS_KEYS:  # the summary is the final float32 evaluation (log_final), not the last logged value
        run.define_metric(key, summary="none")
    run.define_metric("style/*", summary="none")
    return run


def setting_digest(cfg: DictConfig) -> str:
    """8 hex digits of everything that makes the picture what it is (not where it goes or how it is logged)."""
    config = flat(OmegaConf.to_container(cfg, resolve=True))
    kept = {k: v for k, v in config.items()
            if not any(k == p or k.startswith(p + ".") for p in NOT_SETTING_KEYS)}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:8]


def artifact_name(cfg: DictConfig, kind: str = "final") -> str:
    """`final-<content>__<style>-<digest>`: a rerun of the same setting adds a version to the same collection."""
    from ..config import style_paths
    from ..paths import stem
    styles = "+".join(stem(s) for s in style_paths(cfg))
    return f"{kind}-{stem(cfg.data.content)}__{styles}-{setting_digest(cfg)}"[:128]


def log_final(run, cfg: DictConfig, folder: str, metrics: dict) -> None:
    """The final float32 numbers as the summary (the loss columns mean the final loss), what was used where the
    dashboard can filter on it, and final.png (and last.ckpt with logger.log_checkpoint) as versioned artifacts."""
    import wandb  # only when logging: it takes half a second to import
    summary = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float, str)):
            summary[f"final/{key}"] = value
            if key in LOSS_KEYS or key.startswith("style/"):
                summary[key] = value
    size = metrics.get("size") or [None, None]
    facts = {"stopped": metrics.get("stopped"), "precision": metrics.get("precision"), "height": size[0],
             "width": size[1], "steps": metrics.get("steps"),
             "tiling_blocks": (metrics.get("tiling") or {}).get("blocks_per_evaluation", [1])[-1]}  # 1: whole
    run.summary.update({**summary, **facts})
    run.config.update({"used": {**used(cfg), **facts}}, allow_val_change=True)
    meta = {**{k: metrics[k] for k in metrics if k in LOSS_KEYS or k in ("steps", "seconds", "size", "precision")},
            "config_digest": setting_digest(cfg), "run_id": run.id}
    try:
        artifact = wandb.Artifact(artifact_name(cfg), type="image", metadata=meta)
        artifact.add_file(os.path.join(folder, "final.png"))
        run.log_artifact(artifact)
        if cfg.logger.get("log_checkpoint") and os.path.exists(os.path.join(folder, "last.ckpt")):
            ckpt = wandb.Artifact(artifact_name(cfg, "ckpt"), type="model", metadata=meta)
            ckpt.add_file(os.path.join(folder, "last.ckpt"))
            run.log_artifact(ckpt)
    except OSError as e:  # WANDB_DATA_DIR unwritable, ...: the outputs are written, the run goes on
        note(f"W&B: final.png not logged as an artifact ({e.strerror or str(e).splitlines()[0]})")


def finish(run, job: Any = None) -> None:
    """Close a W&B run (flushes an offline run's file); `run` may be the Future of one still starting.

    With a `job` that did not end with a result (interrupted, failed), the run ends with exit code 1 and
    summary `stopped` says why. Prints one line: the run's URL, or the `wandb sync` command for an offline run.
    """
    if isinstance(run, Future):
        try:
            run = run.result()
        except Exception:  # it never started: nothing to close (the error shows where the run was needed)
            return
    if run is None:
        return
    code = 0
    if job is not None and job.result is None:
        code = 1
        run.summary["stopped"] = "failed" if job.error else "interrupted"
        if job.error:
            run.summary["error"] = job.error[:500]
    offline, sync_dir, run_id = run.settings.mode in ("offline", "dryrun"), run.settings.sync_dir, run.id
    url = None if offline else run.url
    run.finish(exit_code=code)
    if offline:
        runs = os.path.join(os.path.dirname(sync_dir), f"offline-run-*-{run_id}")
        parts = len(glob.glob(runs))
        note(f"W&B: offline run {run_id}{f' ({parts} parts)' if parts > 1 else ''}; upload with: wandb sync "
             f"{runs if parts > 1 else sync_dir}", sys.stdout)
    else:
        note(f"W&B: run {run_id}: {url}", sys.stdout)


def log(run, data: dict, step: Optional[int] = None) -> None:
    """Numbers (and images, tables, videos made by the functions below) into a run's history at `step`."""
    run.log(data, step=step)


def summarize(run, values: dict) -> None:
    """Values for a run's summary, the columns of the dashboard's run table."""
    run.summary.update(values)


def image(picture, caption: Optional[str] = None):
    """A PIL image as W&B logs it (uint8: a float tensor in [0, 1] came out all black in wandb 0.30); None for
    None (a picture that could not be read)."""
    if picture is None:
        return None
    import wandb  # only when logging: it takes half a second to import
    return wandb.Image(picture, caption=caption)


def table(columns: list[str], rows: Iterable[list]):
    """A W&B Table; PIL images in its cells become W&B images (row by row: `rows` may be a generator)."""
    import wandb  # only when logging: it takes half a second to import
    from PIL import Image
    out = wandb.Table(columns=columns)
    for row in rows:
        out.add_data(*(image(v) if isinstance(v, Image.Image) else v for v in row))
    return out


def video(path: str, caption: Optional[str] = None):
    """An mp4 file as W&B logs it. A file, not an array: wandb encodes arrays with moviepy, not a dependency."""
    import wandb  # only when logging: it takes half a second to import
    return wandb.Video(path, format="mp4", caption=caption)
