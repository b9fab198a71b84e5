"""Reads W&B offline run files (.wandb, a LevelDB-style log of protobuf records) to check what was logged."""

from __future__ import annotations

import glob
import json
import os
import struct
import sys
from dataclasses import dataclass, field

from wandb.proto import wandb_internal_pb2 as pb

_HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version
_BLOCK = 32768


def _records(path: str):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        block_left = _BLOCK - (pos % _BLOCK)
        if block_left < 7:  # trailer padding
            pos += block_left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            yield pending + chunk
            pending = b""


@dataclass
class OfflineRun:
    folder: str
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    history_keys: set[str] = field(default_factory=set)
    history_rows: int = 0
    config_keys: set[str] = field(default_factory=set)
    artifacts: list[str] = field(default_factory=list)
    artifact_metadata: dict = field(default_factory=dict)  # artifact name -> its metadata
    images: list[str] = field(default_factory=list)
    id: str = ""
    resumed: bool = False
    exit_code: int | None = None  # None: the run never finished (killed)
    config: dict = field(default_factory=dict)  # key -> value, as last set
    summary: dict = field(default_factory=dict)  # key ("a/b" for nested) -> value, as last set
    history_steps: list[int] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # define_metric name -> its summary options


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _flush_this_process() -> None:
    """Runs finished in this process may still have records on their way to disk through W&B's service (a read
    right after finish() has come back without them): shutting the service down writes them all."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()


def read_run(folder: str) -> OfflineRun:
    _flush_this_process()
    path = glob.glob(os.path.join(folder, "run-*.wandb"))[0]
    run = OfflineRun(folder)
    for data in _records(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.tags = rec.run.run_group, rec.run.job_type, list(rec.run.tags)
            run.name, run.id, run.resumed = rec.run.display_name, rec.run.run_id, rec.run.resumed
            run.config_keys |= {item.key for item in rec.run.config.update}
            run.config.update({item.key: json.loads(item.value_json) for item in rec.run.config.update})
        elif kind == "config":
            run.config_keys |= {item.key for item in rec.config.update}
            run.config.update({item.key: json.loads(item.value_json) for item in rec.config.update})
        elif kind == "history":
            run.history_rows += 1
            items = {_key(item): item.value_json for item in rec.history.item}
            run.history_keys |= set(items)
            if "_step" in items:
                run.history_steps.append(int(json.loads(items["_step"])))
        elif kind == "summary":
            run.summary.update({_key(item): json.loads(item.value_json) for item in rec.summary.update})
        elif kind == "metric":
            run.metrics[rec.metric.name] = str(rec.metric.summary).strip()
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
        elif kind == "artifact":
            run.artifacts.append(rec.artifact.name)
            run.artifact_metadata[rec.artifact.name] = json.loads(rec.artifact.metadata or "{}")
    run.images = sorted(glob.glob(os.path.join(folder, "files", "media", "images", "*.png")))
    return run


def offline_runs(root: str) -> list[OfflineRun]:
    return [read_run(d) for d in sorted(glob.glob(os.path.join(root, "**", "offline-run-*"), recursive=True))
            if os.path.isdir(d)]
