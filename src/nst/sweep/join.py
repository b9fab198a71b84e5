"""Joining a clip's chunks (video.chunk) into one video, when the summary is written: every chunk of a clip and
style (and grid setting) complete -> <output.dir>/<clip>__<style>[__setting]/final.mp4, all the chunks' frames in
order at the clip's rate with its audio for that span, and a metrics.json with the seams' warping errors."""

from __future__ import annotations

import json
import os
import re
from typing import Iterator

from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ..errors import UserError, first_line
from ..files import remove_leftovers, save_json
from .plan import Pair

CHUNK_LABEL = re.compile(r"_{1,2}frames-\d+-\d+$")  # a chunk's part of its pair's name


def _metrics(pair: Pair) -> dict:
    with open(os.path.join(pair.dir, "metrics.json")) as f:
        return json.load(f)


def _frames(chunks: list[Pair], counts: list[int]) -> Iterator[Image.Image]:
    for pair, n in zip(chunks, counts):
        for t in range(1, n + 1):
            with Image.open(os.path.join(pair.dir, "frames", f"{t:05d}.png")) as im:
                yield im.convert("RGB")


def join_chunks(cfg: DictConfig, pairs: list[Pair], rows: list[dict]) -> list[str]:
    """Writes each chunked clip's joined final.mp4 and metrics.json; returns one line per clip joined or skipped
    (nothing for one whose joined video is newer than all its chunks)."""
    if not cfg.video.chunk:
        return []
    status = {row["pair"]: row["status"] for row in rows}
    clips: dict[str, list[Pair]] = {}
    for pair in pairs:
        if pair.video and CHUNK_LABEL.search(pair.name):
            clips.setdefault(CHUNK_LABEL.sub("", pair.name), []).append(pair)
    lines = []
    for name, chunks in clips.items():
        out_dir = os.path.join(cfg.output.dir, name)
        target = os.path.join(out_dir, "final.mp4")
        undone = [p.name for p in chunks if status.get(p.name) not in ("done", "cached")]
        if undone:
            why = ", ".join(f"{n} {status.get(n) or 'todo'}" for n in undone)
            lines.append(f"{name}: not joined ({why})")
            continue
        try:
            outputs = ("final.mp4", "metrics.json")
            newest = max(os.path.getmtime(os.path.join(p.dir, f)) for p in chunks for f in outputs)
            done = [os.path.join(out_dir, f) for f in outputs]
            if all(os.path.isfile(f) for f in done) and os.path.getmtime(target) > newest:
                continue  # joined after its chunks were last written
            lines.append(_join(cfg, chunks, out_dir, target))
        except (UserError, OSError, ValueError, KeyError) as e:
            lines.append(f"{name}: not joined ({first_line(e)})")
    return lines


def _join(cfg: DictConfig, chunks: list[Pair], out_dir: str, target: str) -> str:
    from ..video.decode import read_clip
    from ..video.encode import write_video
    metrics = [_metrics(p) for p in chunks]
    remove_leftovers(out_dir)  # a join killed halfway left its temporary file (one process joins, at the end)
    counts = [int(m["frames"]) for m in metrics]
    first = chunks[0]
    # the clip's rate, audio and the time of the first frame, as the chunks' runs read them
    setting = lambda key: first.settings[key] if key in first.settings else OmegaConf.select(cfg, key)  # noqa: E731
    clip = read_clip(first.content, setting("data.size"), int(setting("video.start")), 1, setting("video.fps"))
    total = sum(counts)
    write_video(target, _frames(chunks, counts), clip.fps, clip.source if clip.audio else None,
                clip.start_time, total / float(clip.fps), setting("video.crf"))
    save_json({"frames": total, "fps": float(clip.fps), "audio": clip.audio, "chunks": [p.name for p in chunks],
               # the seam before each chunk after the first; null where that chunk started from its content
               "seam_warping_error": [m.get("seam_warping_error") for m in metrics[1:]]},
              os.path.join(out_dir, "metrics.json"))
    return f"{os.path.basename(out_dir)}: {len(chunks)} chunks joined, {total} frames -> {target}"
