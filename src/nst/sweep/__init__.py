"""Many content/style pairs in one command, on every GPU (or CPU process) there is, grouped for W&B.

    python -m nst.sweep --config configs/sweep.yaml                          # one process
    torchrun --nproc_per_node=4 -m nst.sweep --config configs/sweep.yaml     # one process per GPU
    srun --ntasks-per-node=4 --gpus-per-node=4 python -m nst.sweep --config configs/sweep.yaml

The pairs are `sweep.contents x sweep.styles` (paths or globs) or an explicit `sweep.pairs` list; every other
key is a single run's (shared defaults). Pairs are independent optimizations, not one distributed model: each
process reads its rank and world size from the launcher (torchrun, else SLURM), takes `pairs[rank::world]` and
runs each pair with its own single-device Trainer on cuda:LOCAL_RANK (or the CPU). Nothing is averaged
between processes; they only meet once at the end, where rank 0 collects every rank's results and writes
`summary.csv`, `contact_sheet.png` and a W&B Table.

Each pair writes `<output.dir>/<content-stem>__<style-stem>/` (final.png, metrics.json, config.yaml) and logs
one W&B run (group = sweep name, job_type = pair). Rerunning skips pairs whose outputs are complete and were
made with the same settings, so a killed sweep finishes where it stopped. A pair that fails (a bad image, a
NaN loss, out of memory) gets a `failed` row with its error and does not stop the others; the exit status is
then 1. Config errors exit with status 2 and one line `error: ...`.
"""

from __future__ import annotations

import argparse
import copy
import csv
import glob
import os
import re
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, UserError
from ..runner.interrupt import Interrupted

OUTPUTS = ("final.png", "metrics.json", "config.yaml")
ERROR_FILE = "error.txt"
SUMMARY_COLUMNS = ["pair", "content", "style", "status", "loss", "content_loss", "style_loss", "tv_loss",
                   "seconds", "total_seconds", "steps", "evaluations", "height", "width", "rank", "error"]
# Keys that do not change a pair's result: a pair made with other values of these is still complete.
NOT_RESULT_KEYS = ("logger", "trainer.devices", "trainer.accelerator", "trainer.enable_progress_bar", "resume",
                   "output.checkpoint")
CHECKPOINT = "last.ckpt"  # what an interrupted run leaves (run.py): the pair goes on from there
# What launchers set and Lightning looks at to pick a cluster environment or a rank. Hidden while a pair's
# single-device Trainer runs, so Lightning treats it as the plain one-process run it is.
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                 "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "NODE_RANK", "TORCHELASTIC_RUN_ID",
                 "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NNODES",
                 "SLURM_NODEID", "JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE", "JSM_NAMESPACE_LOCAL_RANK")
WAIT_DAYS = 7  # how long a rank that finished early waits for the others at the end


# ----------------------------------------------------------------------------- the plan: which pairs, where

@dataclass
class Pair:
    index: int  # position in the sweep (content-major for contents x styles)
    content: str
    style: str
    name: str  # <content-stem>__<style-stem>
    dir: str


def _stem(path: str) -> str:
    stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "image"


def _expand(key: str, patterns: list[str]) -> list[str]:
    """Paths and globs -> paths, in order, each once. A glob that matches nothing is a config error; a plain
    path that does not exist is kept (its pairs fail and say why, the others run)."""
    out: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not matches:
                raise ConfigError(f"sweep.{key}: '{pattern}' matches no file")
        else:
            matches = [pattern]
        for m in matches:
            if os.path.normpath(m) not in {os.path.normpath(p) for p in out}:
                out.append(m)
    return out


def plan(cfg: DictConfig) -> list[Pair]:
    """Every pair of the sweep in a fixed order (the same on every rank), each once."""
    sweep = cfg.sweep
    if sweep.contents:
        raw = [(c, s) for c in _expand("contents", list(sweep.contents)) for s in _expand("styles", list(sweep.styles))]
    elif sweep.pairs:
        raw = [(p["content"], p["style"]) if isinstance(p, DictConfig) else (p[0], p[1]) for p in sweep.pairs]
    else:
        raise ConfigError("sweep: no pairs; set sweep.contents and sweep.styles (paths or globs), or sweep.pairs")
    pairs: list[Pair] = []
    seen: dict[tuple[str, str], Pair] = {}
    by_name: dict[str, Pair] = {}
    for content, style in raw:
        key = (os.path.normpath(content), os.path.normpath(style))
        if key in seen:
            continue  # the same pair listed twice is computed once
        name = f"{_stem(content)}__{_stem(style)}"
        if name in by_name:
            other = by_name[name]
            raise ConfigError(f"sweep: {content} + {style} and {other.content} + {other.style} would both write "
                              f"{os.path.join(cfg.output.dir, name)} (same file names; rename one)")
        pair = Pair(len(pairs), content, style, name, os.path.join(cfg.output.dir, name))
        pairs.append(pair)
        seen[key] = pair
        by_name[name] = pair
    return pairs


def sweep_name(cfg: DictConfig) -> str:
    if cfg.sweep.name:
        return cfg.sweep.name
    if cfg.logger.group:
        return cfg.logger.group
    return os.path.basename(os.path.normpath(os.path.abspath(cfg.output.dir)))


def pair_config(cfg: DictConfig, pair: Pair, device: Optional[int] = None) -> DictConfig:
    """The single-run config of one pair: the sweep's settings, this pair's images and folder, W&B grouping.

    Its sweep section is reset to the defaults, so `train.py --config <pair>/config.yaml` redoes this pair."""
    from ..config import SweepConfig, validate

    pc = copy.deepcopy(cfg)  # keeps the schema: values are type-checked as they are set
    pc.data.content = pair.content
    pc.data.style = pair.style
    pc.data.style_weights = None
    pc.output.dir = pair.dir
    pc.logger.group = sweep_name(cfg)
    pc.logger.job_type = "pair"
    pc.logger.name = pair.name
    pc.logger.tags = list(cfg.logger.tags) + [f"content:{_stem(pair.content)}"[:64], f"style:{_stem(pair.style)}"[:64]]
    pc.sweep = OmegaConf.structured(SweepConfig)
    if device is not None:
        pc.trainer.accelerator = "gpu"
        pc.trainer.devices = [device]
    else:
        pc.trainer.accelerator = "cpu"
        pc.trainer.devices = 1
    validate(pc)
    return pc


def _result_view(container: dict) -> dict:
    """A config as a plain dict without the keys that do not change the result."""
    for dotted in NOT_RESULT_KEYS:
        *parents, last = dotted.split(".")
        node = container
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return container


def _first_difference(a: Any, b: Any, prefix: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(dict.fromkeys([*a, *b])):
            d = _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
            if d:
                return d
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} -> {b!r}"


def state(pair: Pair, pc: DictConfig) -> tuple[str, str]:
    """(state, why) of a pair's folder: `complete` (all three outputs, made with this sweep's settings for the
    pair), `resumable` (an interrupted run's checkpoint with the same settings) or `todo`."""
    missing = [f for f in OUTPUTS if not os.path.isfile(os.path.join(pair.dir, f))]
    if len(missing) == len(OUTPUTS):
        return "todo", "new"
    try:
        stored = OmegaConf.to_container(OmegaConf.load(os.path.join(pair.dir, "config.yaml")), resolve=True)
    except Exception as e:  # no or an unreadable config.yaml: redo the pair
        return "todo", f"incomplete (no {', '.join(missing)})" if missing else f"unreadable config.yaml ({type(e).__name__})"
    diff = _first_difference(_result_view(stored), _result_view(OmegaConf.to_container(pc, resolve=True)))
    if diff:
        return "todo", f"settings changed ({diff})"
    if not missing:
        return "complete", "complete"
    if "final.png" in missing and os.path.isfile(os.path.join(pair.dir, CHECKPOINT)):
        return "resumable", f"interrupted earlier, resuming from {CHECKPOINT}"
    return "todo", f"incomplete (no {', '.join(missing)})"


# ----------------------------------------------------------------------------- processes: rank, device, meeting

@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"  # torchrun | slurm | none


def dist_info(env: Optional[dict] = None) -> Dist:
    """Rank and world size from torchrun's variables, else from SLURM's (srun), else one process."""
    env = dict(os.environ if env is None else env)
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return Dist(int(env["RANK"]), world, int(env.get("LOCAL_RANK", 0)),
                    int(env.get("LOCAL_WORLD_SIZE", world)), "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        world = int(env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"]))
        per_node = env.get("SLURM_NTASKS_PER_NODE", "")
        local_world = int(per_node) if per_node.isdigit() else world
        return Dist(int(env["SLURM_PROCID"]), world, int(env.get("SLURM_LOCALID", 0)), local_world, "slurm")
    return Dist()


class Meeting:
    """The one point where the processes meet: at the end, rank 0 collects everybody's results.

    A gloo process group on the CPU (torchrun's rendezvous, or SLURM's first node); used for nothing else, so
    the pairs' Trainers never see it. A rank that finishes early waits (up to WAIT_DAYS) for the others."""

    def __init__(self, d: Dist):
        self.d = d
        self.active = False
        if d.world_size == 1:
            return
        import datetime

        import torch.distributed as dist
        if d.launcher == "slurm":
            if "MASTER_ADDR" not in os.environ:
                from lightning.fabric.plugins.environments import SLURMEnvironment
                os.environ["MASTER_ADDR"] = SLURMEnvironment.resolve_root_node_address(
                    os.environ.get("SLURM_NODELIST", "127.0.0.1"))
            if "MASTER_PORT" not in os.environ:  # Lightning's rule: 15000 + the job id's last 4 digits
                os.environ["MASTER_PORT"] = str(15000 + int(os.environ.get("SLURM_JOB_ID", "0")[-4:] or 0))
        dist.init_process_group("gloo", rank=d.rank, world_size=d.world_size,
                                timeout=datetime.timedelta(days=WAIT_DAYS))
        self.active = True

    def gather(self, obj: Any) -> Optional[list]:
        if not self.active:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.d.world_size if self.d.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist
            dist.destroy_process_group()
            self.active = False


@contextmanager
def hidden_launcher_env() -> Iterator[None]:
    """Hide the launcher's rank variables from Lightning while a single-device pair runs."""
    saved = {k: os.environ.pop(k) for k in LAUNCHER_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def independent_process_logging() -> None:
    """Lightning sets rank_zero_only.rank from RANK/SLURM_PROCID at import and then silences loggers and
    messages on ranks > 0 (WandbLogger.experiment becomes a dummy). Every process here is its own run."""
    import sys

    import lightning.pytorch  # noqa: F401  (sets the rank from the environment at import)
    # Only the packages already imported: importing the standalone pytorch_lightning would also re-point
    # Lightning's shared rank-zero logger at its own, unquieted logger.
    for module in ("lightning_utilities.core.rank_zero", "lightning.fabric.utilities.rank_zero",
                   "lightning_fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                   "pytorch_lightning.utilities.rank_zero"):
        if module in sys.modules:
            sys.modules[module].rank_zero_only.rank = 0


def pick_device(cfg: DictConfig, d: Dist) -> Optional[int]:
    """The CUDA device index of this process (LOCAL_RANK modulo the visible GPUs), or None for the CPU."""
    import torch

    from ..runner.hardware import resolve_accelerator
    if resolve_accelerator(cfg.trainer.accelerator) not in ("gpu", "cuda") or not torch.cuda.is_available():
        if d.local_world_size > 1 and torch.get_num_threads() == 1:
            # torchrun sets OMP_NUM_THREADS=1 for several processes; on a CPU give each its share of the cores.
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(max(1, cores // d.local_world_size))
        return None
    index = d.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return index


# ----------------------------------------------------------------------------- one rank's share

@dataclass
class Result:
    pair: int  # index into the plan
    status: str  # done (computed now) | cached (complete from before) | failed
    rank: int
    error: str = ""
    metrics: dict = field(default_factory=dict)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return line if isinstance(e, UserError) and line else f"{type(e).__name__}: {line}".rstrip(": ")


def _say(d: Dist, text: str) -> None:
    prefix = f"[rank {d.rank}/{d.world_size}] " if d.world_size > 1 else ""
    print(prefix + text, flush=True)


def run_share(cfg: DictConfig, pairs: list[Pair], d: Dist, device: Optional[int]) -> list[Result]:
    """This rank's pairs, pairs[rank::world_size], one after another, each with its own Trainer and W&B run."""
    from ..files import save_text
    from ..runner.run import run

    mine = pairs[d.rank::d.world_size]
    results = []
    for i, pair in enumerate(mine, 1):
        where = f"{i}/{len(mine)} {pair.name}"
        try:
            pc = pair_config(cfg, pair, device)
        except UserError as e:  # cannot happen for a validated sweep config, but never stop the others
            results.append(Result(pair.index, "failed", d.rank, _one_line(e)))
            _say(d, f"{where}: failed: {_one_line(e)}")
            continue
        status, why = state(pair, pc)
        if status == "complete":
            results.append(Result(pair.index, "cached", d.rank))
            _say(d, f"{where}: complete, skipped")
            continue
        _say(d, f"{where}: running ({why})")
        error_path = os.path.join(pair.dir, ERROR_FILE)
        extra = {"pair": {"content": pair.content, "style": pair.style, "name": pair.name, "index": pair.index,
                          "of": len(pairs)}, "sweep_name": sweep_name(cfg)}
        try:
            # An older result goes first: if this redo is interrupted, it must not look complete next to the
            # new config.yaml.
            for stale in ("final.png", "metrics.json"):
                if os.path.isfile(os.path.join(pair.dir, stale)):
                    os.unlink(os.path.join(pair.dir, stale))
            try:
                pc.resume = status == "resumable"
                with hidden_launcher_env():
                    result = run(pc, extra_config=extra)
            except UserError as e:
                if not (pc.resume and str(e).startswith("resume:")):
                    raise
                _say(d, f"{where}: cannot resume ({_one_line(e)}); starting over")
                pc.resume = False
                with hidden_launcher_env():
                    result = run(pc, extra_config=extra)
        except Exception as e:  # the pair failed; the others go on (interrupts are BaseExceptions and stop all)
            message = _one_line(e)
            results.append(Result(pair.index, "failed", d.rank, message))
            _say(d, f"{where}: failed: {message}")
            try:
                save_text(f"{message}\n\n{traceback.format_exc()}", error_path)
            except Exception:
                pass
            _free_memory()
            continue
        if os.path.exists(error_path):
            os.unlink(error_path)
        m = result.metrics
        results.append(Result(pair.index, "done", d.rank, metrics=m))
        _say(d, f"{where}: done in {m['seconds']:.1f} s, {m['steps']} steps, loss {m['loss']:.4g}")
    return results


def _free_memory() -> None:
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the end: summary, sheet, table

def _read_metrics(pair: Pair) -> dict:
    import json
    try:
        with open(os.path.join(pair.dir, "metrics.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def summary_rows(pairs: list[Pair], results: list[Result]) -> list[dict]:
    by_pair = {r.pair: r for r in results}
    rows = []
    for pair in pairs:
        r = by_pair.get(pair.index) or Result(pair.index, "failed", -1, "no result (its process did not report)")
        m = _read_metrics(pair) if r.status != "failed" else {}
        size = m.get("size") or [None, None]
        row = {"pair": pair.name, "content": pair.content, "style": pair.style, "status": r.status,
               "loss": m.get("loss"), "content_loss": m.get("content_loss"), "style_loss": m.get("style_loss"),
               "tv_loss": m.get("tv_loss"), "seconds": m.get("seconds"), "total_seconds": m.get("total_seconds"),
               "steps": m.get("steps"), "evaluations": m.get("evaluations"), "height": size[0], "width": size[1],
               "rank": r.rank if r.status == "done" else "", "error": r.error}
        rows.append(row)
    return rows


def write_summary(rows: list[dict], path: str) -> None:
    import io

    from ..files import save_text
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in SUMMARY_COLUMNS})
    save_text(buf.getvalue(), path)


def axes(pairs: list[Pair]) -> tuple[list[str], list[str]]:
    """The contact sheet's rows (contents) and columns (styles), in the sweep's order."""
    return list(dict.fromkeys(p.content for p in pairs)), list(dict.fromkeys(p.style for p in pairs))


def _fit(im, box: int):
    """Scaled (up or down) so that the longest side is `box`."""
    from PIL import Image

    from ..images import fit_size
    size = fit_size(im.size, box)
    return im.resize(size, Image.Resampling.LANCZOS) if size != im.size else im.copy()


def contact_sheet(pairs: list[Pair], rows: list[dict], cell: int, title: str = ""):
    """A grid on white: the top row shows the styles, the left column the contents, and cell (i, j) the result
    for content i in style j. (1 + #contents) x (1 + #styles) square cells of `cell` pixels each."""
    from PIL import Image, ImageDraw, ImageFont

    from ..images import open_rgb
    contents, styles = axes(pairs)
    sheet = Image.new("RGB", ((len(styles) + 1) * cell, (len(contents) + 1) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=max(10, cell // 16))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    pad = max(2, cell // 32)
    label_h = max(12, cell // 12)

    def put(im, col: int, row: int, label: str = "", fill=None) -> None:
        x0, y0 = col * cell, row * cell
        if fill is not None:
            draw.rectangle([x0 + pad, y0 + pad, x0 + cell - pad - 1, y0 + cell - pad - 1], fill=fill)
        box = cell - 2 * pad - (label_h if label else 0)
        if im is not None:
            im = _fit(im, box)
            sheet.paste(im, (x0 + (cell - im.width) // 2, y0 + pad + (box - im.height) // 2))
        if label:
            text = label if len(label) <= 2 * cell // max(10, cell // 16) else label[: 2 * cell // max(10, cell // 16) - 1] + "…"
            draw.text((x0 + cell // 2, y0 + cell - pad - label_h // 2), text, fill=(0, 0, 0), font=font, anchor="mm")

    def source(path: str):
        try:
            return open_rgb(path)
        except Exception:
            return None

    if title:
        put(None, 0, 0, title)
    for j, style in enumerate(styles, 1):
        im = source(style)
        put(im, j, 0, _stem(style), fill=None if im is not None else (250, 225, 225))
    for i, content in enumerate(contents, 1):
        im = source(content)
        put(im, 0, i, _stem(content), fill=None if im is not None else (250, 225, 225))
    status = {row["pair"]: row["status"] for row in rows}
    for pair in pairs:
        i, j = contents.index(pair.content) + 1, styles.index(pair.style) + 1
        if status.get(pair.name) == "failed":
            put(None, j, i, "failed", fill=(250, 225, 225))
            continue
        try:
            with Image.open(os.path.join(pair.dir, "final.png")) as im:
                put(im.convert("RGB"), j, i)
        except OSError:
            put(None, j, i, "missing", fill=(240, 240, 240))
    return sheet


def log_table(cfg: DictConfig, pairs: list[Pair], rows: list[dict], sheet, out_dir: str) -> Optional[str]:
    """One more W&B run in the sweep's group (job_type=summary): a Table of every pair with thumbnails and final
    losses, and the contact sheet. Returns the run's id, or None when logging is disabled."""
    from ..runner.tracking import finish, make_logger
    sc = copy.deepcopy(cfg)
    sc.logger.group = sweep_name(cfg)
    sc.logger.job_type = "summary"
    sc.logger.name = f"{sweep_name(cfg)} summary"
    sc.logger.tags = list(cfg.logger.tags) + ["summary"]
    logger = make_logger(sc, out_dir, {"pairs": len(pairs)})
    if logger is None:
        return None
    try:
        import wandb
        from PIL import Image

        from ..images import open_rgb

        def thumb(path: str):
            try:
                return wandb.Image(_fit(open_rgb(path), 128))
            except Exception:
                return None

        columns = ["pair", "content", "style", "result", "status", "loss", "content_loss", "style_loss",
                   "seconds", "steps", "error"]
        table = wandb.Table(columns=columns)
        for pair, row in zip(pairs, rows):
            result = None
            if row["status"] != "failed":
                try:
                    with Image.open(os.path.join(pair.dir, "final.png")) as im:
                        result = wandb.Image(_fit(im.convert("RGB"), 256))
                except OSError:
                    result = None
            table.add_data(pair.name, thumb(pair.content), thumb(pair.style), result, row["status"], row["loss"],
                           row["content_loss"], row["style_loss"], row["seconds"], row["steps"], row["error"])
        run = logger.experiment
        run.log({"pairs": table, "contact_sheet": wandb.Image(sheet, caption="rows: contents, columns: styles")})
        for status in ("done", "cached", "failed"):
            run.summary[f"pairs_{status}"] = sum(r["status"] == status for r in rows)
        return run.id
    finally:
        finish(logger)


def finalize(cfg: DictConfig, pairs: list[Pair], results: list[Result]) -> list[dict]:
    from ..files import save_png
    out_dir = cfg.output.dir
    rows = summary_rows(pairs, results)
    write_summary(rows, os.path.join(out_dir, "summary.csv"))
    sheet = contact_sheet(pairs, rows, cfg.sweep.cell, sweep_name(cfg))
    save_png(sheet, os.path.join(out_dir, "contact_sheet.png"))
    log_table(cfg, pairs, rows, sheet, out_dir)
    return rows


# ----------------------------------------------------------------------------- command line

def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nst.sweep", description="Style transfer for many content/style pairs (see configs/sweep.yaml).",
        epilog="Launch with torchrun --nproc_per_node=N (one process per GPU) or srun; overrides are key=value "
               "pairs of the config schema, e.g. data.size=256 'sweep.styles=[assets/the_scream.jpg]'.")
    parser.add_argument("--config", "-c", help="YAML config file with a sweep section")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    d = dist_info()
    try:
        from ..config import load_config
        cfg = load_config(args.config, args.overrides)
        if cfg.trainer.devices not in (1, "1", "auto"):
            raise ConfigError(f"trainer.devices: a sweep runs each pair on one device (got {cfg.trainer.devices}); "
                              f"use one process per GPU instead (torchrun --nproc_per_node, make sweep NPROC=)")
        pairs = plan(cfg)
        os.makedirs(cfg.output.dir, exist_ok=True)
    except UserError as e:
        if d.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if d.rank == 0:
            print(f"error: output.dir: cannot create {cfg.output.dir} ({e.strerror or e})", file=sys.stderr)
        return 2
    start = time.time()
    independent_process_logging()
    device = pick_device(cfg, d)
    if d.rank == 0:
        _say(d, f"sweep '{sweep_name(cfg)}': {len(pairs)} pairs over {d.world_size} process(es) "
                f"({d.launcher}), output in {cfg.output.dir}")
    _say(d, f"{len(pairs[d.rank::d.world_size])} pairs on {'cuda:%d' % device if device is not None else 'cpu'}")
    meeting = Meeting(d)
    try:
        results = run_share(cfg, pairs, d, device)
        gathered = meeting.gather(results)
    except (KeyboardInterrupt, Interrupted) as e:  # Ctrl-C, or SIGTERM (e.g. a SLURM time limit)
        message = e.message if isinstance(e, Interrupted) else "interrupted"
        _say(d, f"{message}\nrun the same command again to finish the sweep: complete pairs are skipped, "
                f"an interrupted one goes on from its checkpoint")
        return e.exit_code if isinstance(e, Interrupted) else 130
    finally:
        meeting.close()
    if d.rank != 0:
        return 0
    rows = finalize(cfg, pairs, [r for rank_results in gathered for r in rank_results])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed")}
    _say(d, f"sweep '{sweep_name(cfg)}': {counts['done']} done, {counts['cached']} already complete, "
            f"{counts['failed']} failed, in {time.time() - start:.1f} s -> {os.path.join(cfg.output.dir, 'summary.csv')}, "
            f"{os.path.join(cfg.output.dir, 'contact_sheet.png')}")
    for row in rows:
        if row["status"] == "failed":
            _say(d, f"  failed: {row['pair']}: {row['error']}")
    return 1 if counts["failed"] else 0

