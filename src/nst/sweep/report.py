"""The end of a sweep: summary.csv, the contact sheet and the W&B table, from what is on disk (so that whichever
process finishes last, of whichever launch, writes the same files). A video pair's row has the video's numbers
too (VIDEO_COLUMNS), and its picture is the clip's middle frame, stylized (frames/NNNNN.png) and original."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont

from ..files import save_png, save_text
from ..images import fit_size, open_rgb
from ..runner import wandb
from ..errors import UserError, first_line
from ..paths import stem
from .plan import Pair, grid_keys, pair_config, state, sweep_name

ERROR_FILE = "error.txt"  # a failed pair's message and traceback
SUMMARY_ID_FILE = "wandb_summary_id"  # the sweep's one summary run in W&B, which reruns go on with
SUMMARY_COLUMNS = ["pair", "content", "style", "status", "loss", "content_loss", "style_loss", "tv_loss",
                   "seconds", "total_seconds", "steps", "evaluations", "height", "width", "batch", "rank", "error"]
# Columns a sweep with a video pair has too (an image pair leaves them empty), from the video's metrics.json.
VIDEO_COLUMNS = ["frames", "warping_error", "warping_error_input", "temporal_loss", "seconds_per_frame",
                 "first_frame_seconds", "later_frame_seconds"]


@dataclass
class Result:
    pair: int  # index into the plan
    status: str  # done (computed now) | cached (complete from before) | failed
    rank: int
    error: str = ""
    metrics: dict = field(default_factory=dict)


def _read_metrics(pair: Pair) -> dict:
    try:
        with open(os.path.join(pair.dir, "metrics.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _first_line_of(path: str) -> str:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def pair_status(cfg: DictConfig, pair: Pair, mine: Optional[Result], since: float) -> tuple[str, str]:
    """(status, error) of a pair from its folder, whoever computed it: `done` (complete, finished since `since`),
    `cached` (complete from before), `failed` (its error.txt), or `todo` (nobody computed it)."""
    if mine is not None and mine.status == "failed":
        return "failed", mine.error
    try:
        complete = state(pair, pair_config(cfg, pair))[0] == "complete"
    except UserError as e:
        return "failed", first_line(e)
    if complete:
        finished = os.path.getmtime(os.path.join(pair.dir, "metrics.json"))
        return ("done" if (mine is not None and mine.status == "done") or finished >= since else "cached"), ""
    if os.path.exists(os.path.join(pair.dir, ERROR_FILE)):
        return "failed", _first_line_of(os.path.join(pair.dir, ERROR_FILE))
    return "todo", "not computed: every process stopped before it (run the sweep again)"


def summary_rows(cfg: DictConfig, pairs: list[Pair], results: list[Result], since: float) -> list[dict]:
    by_pair = {r.pair: r for r in results}
    rows = []
    for pair in pairs:
        mine = by_pair.get(pair.index)
        status, error = pair_status(cfg, pair, mine, since)
        m = _read_metrics(pair) if status in ("done", "cached") else {}
        size = m.get("size") or [None, None]
        row = {"pair": pair.name, "content": pair.content, "style": pair.style, "status": status,
               "loss": m.get("loss"), "content_loss": m.get("content_loss"), "style_loss": m.get("style_loss"),
               "tv_loss": m.get("tv_loss"), "seconds": m.get("seconds"), "total_seconds": m.get("total_seconds"),
               "steps": m.get("steps"), "evaluations": m.get("evaluations"), "height": size[0], "width": size[1],
               "batch": m.get("batch"), "rank": mine.rank if mine is not None and status == "done" else "",
               "error": error, "dir": os.path.relpath(pair.dir, cfg.output.dir), **pair.settings}
        if pair.video:
            row.update({k: m.get(k) for k in VIDEO_COLUMNS})
        rows.append(row)
    return rows


def write_summary(rows: list[dict], path: str, grid: list[str], videos: bool = False) -> None:
    """One row per run; the grid's keys are columns too, named by the key, and with a video pair VIDEO_COLUMNS."""
    columns = SUMMARY_COLUMNS + (VIDEO_COLUMNS if videos else []) + grid + ["dir"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    save_text(buf.getvalue(), path)


MAX_SHEET_ROWS = 12  # a grid with more rows (contents x settings) gets one sheet per setting


def row_of(pair: Pair) -> tuple[str, str]:
    return pair.content, pair.setting


def axes(pairs: list[Pair]) -> tuple[list[tuple[str, str]], list[str]]:
    """The contact sheet's rows (content, and setting with a grid) and columns (styles), in the sweep's order."""
    return list(dict.fromkeys(row_of(p) for p in pairs)), list(dict.fromkeys(p.style for p in pairs))


def sheets(pairs: list[Pair]) -> dict[str, list[Pair]]:
    """File name -> the runs it shows: contact_sheet.png, or with a large grid one contact_sheet__<setting>.png
    per setting (rows: contents)."""
    settings = list(dict.fromkeys(p.setting for p in pairs))
    if len(settings) == 1 or len(axes(pairs)[0]) <= MAX_SHEET_ROWS:
        return {"contact_sheet.png": pairs}
    return {f"contact_sheet__{s}.png": [p for p in pairs if p.setting == s] for s in settings}


def middle(frames: int) -> int:
    """The 0-based index of the frame a video pair is shown by."""
    return max(0, frames - 1) // 2


def result_image(pair: Pair) -> Image.Image:
    """A pair's picture: final.png, or a video's middle stylized frame (OSError when there is none)."""
    if not pair.video:
        with Image.open(os.path.join(pair.dir, "final.png")) as im:
            return im.convert("RGB")
    frames = (_read_metrics(pair).get("frames") or 0)
    with Image.open(os.path.join(pair.dir, "frames", f"{middle(frames) + 1:05d}.png")) as im:
        return im.convert("RGB")


def content_image(cfg: DictConfig, pair: Pair, longest: int) -> Image.Image:
    """A pair's content as shown: the image, or the clip's frame that its result shows (the middle one once a
    pair of it is complete, else the first)."""
    if not pair.video:
        return open_rgb(pair.content)
    from ..video.decode import read_clip
    v = cfg.video
    frames = _read_metrics(pair).get("frames") or 0
    return read_clip(pair.content, longest, v.start + middle(frames), 1, v.fps).frames[0]


def fit_box(im: Image.Image, box: int) -> Image.Image:
    """Scaled (up or down) so that the longest side is `box`."""
    size = fit_size(im.size, box)
    return im.resize(size, Image.Resampling.LANCZOS) if size != im.size else im.copy()


def contact_sheet(pairs: list[Pair], rows: list[dict], cell: int, title: str = "",
                  cfg: Optional[DictConfig] = None):
    """A grid on white: the top row shows the styles, the left column the contents (under each its grid setting),
    and cell (i, j) the result for row i in style j. (1 + #rows) x (1 + #styles) square cells of `cell` pixels."""
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
            im = fit_box(im, box)
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
        put(im, j, 0, stem(style), fill=None if im is not None else (250, 225, 225))
    def shown_content(pairs_of_row: list[Pair]):
        shown = next((p for p in pairs_of_row if status.get(p.name) in ("done", "cached")), pairs_of_row[0])
        if not shown.video or cfg is None:
            return source(shown.content)
        try:
            return content_image(cfg, shown, cell)
        except Exception:
            return None

    status = {row["pair"]: row["status"] for row in rows}
    for i, (content_path, setting) in enumerate(contents, 1):
        im = shown_content([p for p in pairs if row_of(p) == (content_path, setting)])
        put(im, 0, i, setting or stem(content_path), fill=None if im is not None else (250, 225, 225))
    for pair in pairs:
        i, j = contents.index(row_of(pair)) + 1, styles.index(pair.style) + 1
        if status.get(pair.name) == "failed":
            put(None, j, i, "failed", fill=(250, 225, 225))
            continue
        try:
            put(result_image(pair), j, i)
        except OSError:
            put(None, j, i, "missing", fill=(240, 240, 240))
    return sheet


def log_table(cfg: DictConfig, pairs: list[Pair], rows: list[dict], drawn: dict, out_dir: str,
              grid: list[str]) -> Optional[str]:
    """One more W&B run in the sweep's group (job_type=summary): a Table of every run with thumbnails, its grid
    settings and final losses, and the contact sheet(s). One such run per sweep: a rerun goes on with it (its id
    is in output.dir/wandb_summary_id). Its config says what it is, not a single run's values (a grid's base
    `loss.style_weight` would match a filter on that value). Returns the run's id, or None when logging is off."""
    sc = copy.deepcopy(cfg)
    sc.logger.group = sweep_name(cfg)
    sc.logger.job_type = "summary"
    sc.logger.name = f"{sweep_name(cfg)} summary"
    sc.logger.tags = list(cfg.logger.tags) + ["summary"]
    config = {"summary_of": "sweep", "sweep_name": sweep_name(cfg), "pairs": len(pairs),
              "contents": list(dict.fromkeys(p.content for p in pairs)),
              "styles": list(dict.fromkeys(p.style for p in pairs)),
              "grid": {k: list(dict.fromkeys(p.settings[k] for p in pairs)) for k in grid}}
    run = wandb.start_run(sc, out_dir, config=config, id_file=SUMMARY_ID_FILE, resume=True)
    if run is None:
        return None
    try:
        def thumb(path: str):
            try:
                return fit_box(open_rgb(path), 128)
            except Exception:
                return None

        def content_thumb(pair: Pair):
            try:
                return fit_box(content_image(cfg, pair, 128), 128)
            except Exception:
                return None

        def cells():  # one row at a time: its pictures become W&B images before the next row's are read
            for pair, row in zip(pairs, rows):
                result = None
                if row["status"] != "failed":
                    try:
                        result = fit_box(result_image(pair), 256)
                    except OSError:
                        result = None
                yield [pair.name, content_thumb(pair), thumb(pair.style), *(pair.settings[k] for k in grid), result,
                       row["status"], row["loss"], row["content_loss"], row["style_loss"], row["seconds"],
                       row["steps"], row["error"]]

        columns = ["pair", "content", "style", *grid, "result", "status", "loss", "content_loss", "style_loss",
                   "seconds", "steps", "error"]
        caption = "rows: contents" + (" and settings" if grid else "") + ", columns: styles"
        wandb.log(run, {"pairs": wandb.table(columns, cells()),
                        **{name[:-4]: wandb.image(sheet, caption) for name, sheet in drawn.items()}})
        wandb.summarize(run, {f"pairs_{status}": sum(r["status"] == status for r in rows)
                              for status in ("done", "cached", "failed", "todo")})
        return run.id
    finally:
        wandb.finish(run)


def finalize(cfg: DictConfig, pairs: list[Pair], results: list[Result], since: float) -> list[dict]:
    out_dir = cfg.output.dir
    rows = summary_rows(cfg, pairs, results, since)
    grid = list(grid_keys(cfg))
    write_summary(rows, os.path.join(out_dir, "summary.csv"), grid, any(p.video for p in pairs))
    drawn = {}
    for name, shown in sheets(pairs).items():
        drawn[name] = contact_sheet(shown, rows, cfg.sweep.cell, sweep_name(cfg), cfg)
        save_png(drawn[name], os.path.join(out_dir, name))
    log_table(cfg, pairs, rows, drawn, out_dir, grid)
    return rows
