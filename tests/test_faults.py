"""Faults of sweeps and of what every run reads, found by trying them as an adversary would
(docs/reliability.md, docs/sweep.md): finished work thrown away, chunks that overwrite or mix with other pairs,
values that passed validation and failed late, memory limits the check did not see, and files that are not what
their name says."""

from __future__ import annotations

import json
import os
import threading

import pytest

from helpers import STYLE
from helpers.clips import clip_file, pan, video_args
from helpers.train import assert_one_line_error, cli, tiny
from nst.config import load_config


@pytest.mark.parametrize("override, words", [
    ("video.fps=0.0001", ["video.fps", "0.0001"]),
    ("video.fps=nan", ["video.fps"]),
    ("trainer.max_steps=100000000000000000000", ["trainer.max_steps", "out of range"]),
    ("seed=-100000000000000000000", ["seed", "out of range"]),
    ("video.long_term=[1,100000000000000000000]", ["video.long_term[1]", "out of range"]),
])
def test_a_value_that_would_fail_late_is_one_line_up_front(tmp_path, capsys, override, words):
    """(e) T1 and (f) T5: before anything is decoded or written."""
    code, err = cli(capsys, video_args(tmp_path / "out", clip_file(tmp_path, 2), override))
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "out").exists()


def test_a_wandb_id_that_is_garbage_or_not_a_file_is_no_id(tmp_path, capsys):
    """(g) T3, T7: binary bytes do not stop a fresh run; a FIFO is not read (it would block for ever)."""
    from nst.runner.wandb import read_id
    out = tmp_path / "out"
    out.mkdir()
    (out / "wandb_id").write_bytes(b"\xff\xfe\x00\x9c garbage \xc3")
    assert read_id(str(out / "wandb_id")) is None
    code, err = cli(capsys, tiny(out, "output.checkpoint_every=1", steps=2))
    assert code == 0, err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    answer = []
    reader = threading.Thread(target=lambda: answer.append(read_id(str(fifo))), daemon=True)
    reader.start()
    reader.join(60)  # a guard against a hang, not a measurement: the answer comes at once
    assert answer == [None]


def test_a_sweep_video_whose_metrics_were_lost_is_concluded_from_its_frames(tmp_path):
    """(h) L1: final.mp4 written, metrics.json lost (killed in between): no frame is computed again."""
    from helpers.sweeps import ran, sweep
    from helpers.sweeps import tiny as sweep_args
    clip = clip_file(tmp_path, 3)
    out = tmp_path / "sweep"
    args = sweep_args(out, "data.size=48", "video.steps_later=2", "trainer.precision=32", contents=[clip],
                      styles=[STYLE], mode="disabled")
    first = sweep(tmp_path, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    pair = out / "pan__starry_night"
    os.unlink(pair / "metrics.json")
    kept = {n: os.stat(pair / "frames" / n).st_mtime_ns for n in os.listdir(pair / "frames")}
    again = sweep(tmp_path, *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming from progress.json" in again.stdout and ran(again.stdout) == ["pan__starry_night"]
    assert {n: os.stat(pair / "frames" / n).st_mtime_ns for n in os.listdir(pair / "frames")} == kept
    assert json.loads((pair / "metrics.json").read_text())["frames"] == 3


def _cgroup_tree(root, v2: bool, limit: int, usage: int, path="job/step"):
    proc = root / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 100000000 kB\nMemAvailable: {64 * 2**20} kB\n")
    (proc / "self" / "status").write_text("VmSize: 1000 kB\n")
    (proc / "self" / "cgroup").write_text(f"0::/{path}\n" if v2 else f"4:memory:/{path}\n1:cpu:/\n")
    base = root / "cgroup" if v2 else root / "cgroup" / "memory"
    files = ("memory.max", "memory.current") if v2 else ("memory.limit_in_bytes", "memory.usage_in_bytes")
    (base / path).mkdir(parents=True)
    (base / "job" / files[0]).write_text(f"{limit}\n")  # the job's limit, one level above the process's cgroup
    (base / "job" / files[1]).write_text(f"{usage}\n")
    (base / path / files[0]).write_text("max\n" if v2 else f"{2**63 - 4096}\n")  # no limit of its own
    (base / path / files[1]).write_text(f"{usage}\n")
    return str(proc), str(root / "cgroup")


@pytest.mark.parametrize("v2", [True, False])
def test_the_memory_check_sees_a_cgroup_limit_and_ulimit_v(tmp_path, monkeypatch, v2):
    """L4: 64 GB available on the machine, but the job's cgroup leaves 1 GB: 1 GB it is; an RLIMIT_AS tighter still
    wins."""
    import resource
    from nst.runner import memory
    proc, cgroups = _cgroup_tree(tmp_path, v2, limit=1536 * 2**20, usage=512 * 2**20)
    assert memory.host_memory_bytes(proc, cgroups) == 2**30
    monkeypatch.setattr(resource, "getrlimit", lambda which: (300 * 2**20 + 1000 * 1024, resource.RLIM_INFINITY))
    assert memory.host_memory_bytes(proc, cgroups) == 300 * 2**20


@pytest.mark.parametrize("key, chunk", [("video.chunk", 0), ("video.start", 4), ("video.max_frames", 4)])
def test_a_grid_over_what_plans_the_chunks_is_one_line(key, chunk):
    """W8: the chunks are planned from the sweep's own values; a grid over them is refused, not ignored."""
    from omegaconf import OmegaConf
    from nst.errors import ConfigError
    from nst.sweep.plan import grid_settings
    cfg = load_config(None, [f"video.chunk={chunk}"])
    OmegaConf.update(cfg, "sweep.grid", {key: [1, 2]}, merge=False)
    with pytest.raises(ConfigError, match=f"sweep.grid.{key}: not a setting a grid can vary"):
        grid_settings(cfg)



def _looks_written(folder: str) -> None:
    """A chunk's folder as a finished run leaves it: two frames, final.mp4 and metrics.json (stand-ins)."""
    os.makedirs(os.path.join(folder, "frames"))
    for t, im in enumerate(pan(2), 1):
        im.save(os.path.join(folder, "frames", f"{t:05d}.png"))
    for name in ("final.mp4", "metrics.json"):
        with open(os.path.join(folder, name), "w") as f:
            f.write(json.dumps({"frames": 2}))

def _chunked_sweep(tmp_path, contents, chunk=2):
    from omegaconf import OmegaConf
    cfg = load_config(None, [f"output.dir={tmp_path / 'sweep'}", f"video.chunk={chunk}", "data.size=48"])
    OmegaConf.update(cfg, "sweep.contents", [str(c) for c in contents], merge=False)
    OmegaConf.update(cfg, "sweep.styles", [STYLE], merge=False)
    return cfg


def test_a_chunked_clip_whose_joined_folder_is_another_pairs_is_refused(tmp_path):
    """W2: clip.png and clip.mp4 in one sweep: the join of clip.mp4's chunks would overwrite clip.png's pair."""
    from nst.errors import ConfigError
    from nst.sweep.plan import plan
    clip = clip_file(tmp_path, 4, name="clip.mp4")
    pan(1)[0].save(tmp_path / "clip.png")
    with pytest.raises(ConfigError, match="chunks of .*clip.mp4.* are joined into .*clip__starry_night.*clip.png"):
        plan(_chunked_sweep(tmp_path, [tmp_path / "clip.png", clip]))
    assert [p.name for p in plan(_chunked_sweep(tmp_path, [clip]))] == [
        "clip__starry_night__frames-1-2", "clip__starry_night__frames-3-4"]


def test_a_join_killed_halfway_leaves_no_temporary_file_after_the_next(tmp_path):
    """M6: the join's folder is cleared of a killed join's temporary file."""
    from nst.sweep.join import join_chunks
    from nst.sweep.plan import plan
    clip = clip_file(tmp_path, 4)
    cfg = _chunked_sweep(tmp_path, [clip])
    pairs = plan(cfg)
    for pair in pairs:
        _looks_written(pair.dir)
    joined = tmp_path / "sweep" / "pan__starry_night"
    joined.mkdir()
    (joined / ".final.mp4.killed.tmp").write_bytes(b"half a video")
    lines = join_chunks(cfg, pairs, [{"pair": p.name, "status": "done"} for p in pairs])
    assert lines and "2 chunks joined, 4 frames" in lines[0]
    assert sorted(os.listdir(joined)) == ["final.mp4", "metrics.json"]


def test_a_checkpoint_with_pickled_code_is_refused_in_this_programs_words(tmp_path, capsys):
    """M5: no "weights only" from PyTorch in the line."""
    from helpers.train import evil_file
    out = tmp_path / "out"
    out.mkdir()
    evil_file(out / "last.ckpt", tmp_path / "pwned")
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint", "could run code")
    assert "weights only" not in err.lower() and not (tmp_path / "pwned").exists()


def test_a_chunk_takes_its_seam_only_from_a_previous_chunk_made_like_it_and_a_resume_keeps_it(tmp_path):
    """W6: an older sweep's chunk (another loss.style_weight) is no seam; W7: a resumed chunk that started from a
    seam still records it (its metrics get the seam's warping error, not null)."""
    from nst.config import to_yaml
    from nst.images import to_tensor
    from nst.sweep.assign import Work
    from nst.sweep.batch import seam_of
    from nst.sweep.plan import pair_config, plan
    from nst.video.resume import save_progress
    from nst.video.run import prepare_video
    cfg = _chunked_sweep(tmp_path, [clip_file(tmp_path, 4)])
    cfg.video.steps_later, cfg.model.weights = 2, "random"
    first, second = plan(cfg)
    _looks_written(first.dir)
    work = Work(second, "2/2", pair_config(cfg, second), "new", None)
    work.job = prepare_video(work.cfg)
    older = pair_config(cfg, first)
    older.loss.style_weight *= 10
    with open(os.path.join(first.dir, "config.yaml"), "w") as f:
        f.write(to_yaml(older))
    assert seam_of(work) is None
    with open(os.path.join(first.dir, "config.yaml"), "w") as f:
        f.write(to_yaml(pair_config(cfg, first)))
    seam = seam_of(work)
    assert seam is not None and bool((seam[0] == to_tensor(pan(2)[1])).all())

    job = work.job
    job.seam = seam
    os.makedirs(os.path.join(job.dir, "frames"))
    pan(1)[0].save(job.frame_path(0))
    job.frames_done = [{"frame": 1, "steps": 2}]
    save_progress(job)
    work.cfg.resume = True
    assert prepare_video(work.cfg).from_seam


def test_a_sweep_into_a_folder_it_cannot_write_is_one_line(tmp_path, capsys, monkeypatch):
    """T2: an existing read-only output.dir (made here by refusing the probe: the tests may run as root, whom
    chmod does not stop)."""
    import tempfile
    from helpers.sweeps import tiny as sweep_args
    from nst.sweep import command

    def read_only(*args, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    out = tmp_path / "sweep"
    out.mkdir()
    code = command.main(sweep_args(out, mode="disabled"))
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "output.dir", "cannot write", "Permission denied")
    assert os.listdir(out) == []


def test_running_out_of_memory_under_an_address_space_limit_is_one_line(tmp_path, capsys, monkeypatch):
    """T6: the CPU allocator's error under `prlimit --as` (its text, raised where the module is built)."""
    from nst.runner import run as runner

    def no_memory(*args, **kw):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 3221225472 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(runner, "build_module", no_memory)
    code, err = cli(capsys, tiny(tmp_path / "out", steps=2))
    assert_one_line_error(code, err, "out of memory", "3072 MB", "data.size", "ulimit -v")
    assert "enforce fail" not in err
