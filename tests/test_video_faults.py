"""Faults of video and sweep runs found by trying them as an adversary would (docs/reliability.md): a resume that
mixes inputs, finished work that was thrown away, paths that are globs only by their characters, frame order,
values that passed validation and failed late, and files that are not what their name says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from fractions import Fraction

import pytest
from PIL import Image

from helpers import CONTENT, STYLE, STYLE2
from helpers.train import assert_one_line_error, cli, popen, tiny, train
from nst.config import load_config
from nst.video import io as vio


def pan(n: int, size=(48, 32), shift: int = 3) -> list[Image.Image]:
    """A camera panning right across the photograph."""
    w, h = size
    photo = Image.open(CONTENT).convert("RGB").resize((w + shift * n + 8, h + 8), Image.Resampling.LANCZOS)
    return [photo.crop((shift * t, 4, shift * t + w, 4 + h)) for t in range(n)]


def clip_file(tmp_path, n: int, name="pan.mp4") -> str:
    path = str(tmp_path / name)
    vio.write_video(path, pan(n), Fraction(10), crf=0)
    return path


def video_args(out, content, *extra, style=STYLE):
    return [f"data.content={content}", f"data.style={style}", "data.size=48", "trainer.max_steps=4",
            "video.steps_later=2", "model.weights=random", "logger.mode=disabled", "trainer.precision=32",
            "trainer.enable_progress_bar=false", f"output.dir={out}", *extra]


def stopped_after_frame_2(tmp_path):
    """A 6-frame video run in a process of its own, sent SIGTERM once its frame 2 is written."""
    clip = clip_file(tmp_path, 6)
    out = tmp_path / "run"
    p = popen(video_args(out, clip))
    while not (out / "frames" / "00002.png").exists() and p.poll() is None:
        threading.Event().wait(0.01)
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=240)
    return clip, out, subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


def test_a_stopped_video_resumes_only_with_its_own_inputs_and_then_gives_every_frame(tmp_path):
    """(a) W1: another style is refused in one line; resume=force and the same inputs continue it."""
    clip, out, stopped = stopped_after_frame_2(tmp_path)
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    written = json.loads((out / "progress.json").read_text())["frames"]
    assert 2 <= len(written) < 6
    kept = {n: os.stat(out / "frames" / n).st_mtime_ns for n in os.listdir(out / "frames")}

    other = train(video_args(out, clip, "resume=true", style=STYLE2))
    assert_one_line_error(other.returncode, other.stderr, "resume", "data.style is another image", "resume=force")
    assert {n: os.stat(out / "frames" / n).st_mtime_ns for n in os.listdir(out / "frames")} == kept

    from nst.video.run import prepare_video
    forced = prepare_video(load_config(None, video_args(out, clip, "resume=force", style=STYLE2)))
    assert len(forced.frames_done) == len(written)

    resumed = train(video_args(out, clip, "resume=true"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert vio.probe(str(out / "final.mp4")).frames == 6
    assert {n: os.stat(out / "frames" / n).st_mtime_ns for n in kept} == kept


def test_a_fresh_run_over_unfinished_frames_names_resume_true(tmp_path):
    """(b) L2: the frames of an unfinished run are not replaced silently."""
    from nst.video.resume import PROGRESS
    from nst.video.run import prepare_video
    clip = clip_file(tmp_path, 3)
    out = tmp_path / "run"
    out.mkdir()
    (out / PROGRESS).write_text(json.dumps({"identity": {}, "frames": [{"frame": 1}, {"frame": 2}]}))
    with pytest.warns(UserWarning, match="2 frames of an unfinished earlier run .* add resume=true"):
        prepare_video(load_config(None, video_args(out, clip)))


def test_frames_of_a_folder_or_glob_are_taken_in_numeric_order(tmp_path):
    """(c) W4: frame1..frame12, not frame1, frame10, frame11, frame12, frame2..."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(1, 13):
        Image.new("RGB", (48, 32), (i * 20, 0, 0)).save(folder / f"frame{i}.png")
    for source in (str(folder), str(folder / "frame*.png")):
        clip = vio.read_clip(source, 48)
        assert [im.getpixel((0, 0))[0] for im in clip.frames] == [i * 20 for i in range(1, 13)]
        assert vio.count_frames(source, 2, 3) == 3


def test_an_existing_file_with_glob_characters_is_that_file(tmp_path, capsys):
    """(d) W3: `photo[1].jpg` is an image, `what?.jpg` too; a sweep takes them as they are."""
    from nst.sweep.plan import expand
    photo = tmp_path / "photo[1].jpg"
    shutil.copy(CONTENT, photo)
    shutil.copy(CONTENT, tmp_path / "photo1.jpg")  # what the glob `photo[1].jpg` would match instead
    shutil.copy(CONTENT, tmp_path / "what?.jpg")
    assert not vio.is_video(str(photo)) and not vio.is_video(str(tmp_path / "what?.jpg"))
    assert expand("contents", [str(photo)]) == [str(photo)]
    assert expand("contents", [str(tmp_path / "photo*.jpg")]) == [str(tmp_path / "photo1.jpg"), str(photo)]
    code, err = cli(capsys, tiny(tmp_path / "out", steps=2)[1:] + [f"data.content={photo}"])
    assert code == 0, err
    assert (tmp_path / "out" / "final.png").exists()


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
    from nst.runner.tracking import read_id
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


def test_a_cached_flow_that_holds_nan_is_computed_again(tmp_path):
    """W9: the flow cache is checked on load."""
    import numpy as np
    from nst.video import flow as flows
    frames = pan(2)
    cache = flows.FlowCache(str(tmp_path), frames)
    good, weight = cache.get(1)
    bad = good.numpy().copy()
    bad[0, 3, 3] = np.nan
    np.savez_compressed(cache.path(1, 1), flow=bad, weight=weight.numpy().astype(np.uint8))
    again = flows.FlowCache(str(tmp_path), frames)
    flow, _ = again.get(1)
    assert again.computed == 1 and bool(flow.isfinite().all())


def test_a_corrupt_frame_found_on_resume_is_computed_again_not_a_crash(tmp_path, capsys, one_thread):
    """T4: the frames a resume keeps are read whole first; the first bad one and those after it run again."""
    clip = clip_file(tmp_path, 3)
    out = tmp_path / "run"
    code, err = cli(capsys, video_args(out, clip))
    assert code == 0, err
    progress = json.loads((out / "progress.json").read_text())
    os.unlink(out / "final.mp4")
    (out / "frames" / "00002.png").write_bytes((out / "frames" / "00002.png").read_bytes()[:60])
    first = os.stat(out / "frames" / "00001.png").st_mtime_ns
    from nst.video.run import prepare_video
    assert prepare_video(load_config(None, video_args(out, clip, "resume=true"))).frames_done == progress["frames"][:1]
    code, err = cli(capsys, video_args(out, clip, "resume=true"))
    assert code == 0, err
    assert vio.probe(str(out / "final.mp4")).frames == 3 and os.stat(out / "frames" / "00001.png").st_mtime_ns == first


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


def test_a_chunk_that_decodes_fewer_frames_than_were_planned_is_one_line(tmp_path):
    """W5: a chunk named frames-6-10 must hold 5 frames, not what is left of a shortened clip."""
    from nst.video.run import prepare_video
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, im in enumerate(pan(7)):
        im.save(folder / f"{i:03d}.png")
    cfg = load_config(None, video_args(tmp_path / "out", folder, "video.chunk=5", "video.start=5",
                                       "video.max_frames=5"))
    with pytest.raises(vio.VideoError, match="frames 6-10 were planned, 2 decode"):
        prepare_video(cfg)
    cfg.video.chunk = 0  # train.py's video.max_frames is "at most"
    assert prepare_video(cfg).n == 2


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
        os.makedirs(os.path.join(pair.dir, "frames"))
        for t, im in enumerate(pan(2), 1):
            im.save(os.path.join(pair.dir, "frames", f"{t:05d}.png"))
        for name in ("final.mp4", "metrics.json"):
            with open(os.path.join(pair.dir, name), "w") as f:
                f.write(json.dumps({"frames": 2}))
    joined = tmp_path / "sweep" / "pan__starry_night"
    joined.mkdir()
    (joined / ".final.mp4.killed.tmp").write_bytes(b"half a video")
    lines = join_chunks(cfg, pairs, [{"pair": p.name, "status": "done"} for p in pairs])
    assert lines and "2 chunks joined, 4 frames" in lines[0]
    assert sorted(os.listdir(joined)) == ["final.mp4", "metrics.json"]


def test_a_one_frame_clip_says_one_frame_and_no_warping_error(tmp_path, capsys, one_thread):
    """M3."""
    folder = tmp_path / "one"
    folder.mkdir()
    pan(1)[0].save(folder / "1.png")
    from nst.cli import main
    code = main(video_args(tmp_path / "out", folder))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 frame at" in out and "warping error n/a" in out and "nan" not in out


def test_a_fifo_or_a_symlink_loop_named_like_a_video_says_what_it_is(tmp_path, capsys):
    """M4: not "empty file" for a FIFO, not "no such file" for a link loop."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    code, err = cli(capsys, video_args(tmp_path / "out", fifo))
    assert_one_line_error(code, err, "pipe.mp4", "not a regular file")
    os.symlink(tmp_path / "b.mp4", tmp_path / "a.mp4")
    os.symlink(tmp_path / "a.mp4", tmp_path / "b.mp4")
    code, err = cli(capsys, video_args(tmp_path / "out", tmp_path / "a.mp4"))
    assert_one_line_error(code, err, "a.mp4", "symbolic links")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_with_pickled_code_is_refused_in_this_programs_words(tmp_path, capsys):
    """M5: no "weights only" from PyTorch in the line."""
    from helpers.train import evil_file
    out = tmp_path / "out"
    out.mkdir()
    evil_file(out / "last.ckpt", tmp_path / "pwned")
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint", "could run code")
    assert "weights only" not in err.lower() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("resumed", [False, True])
def test_a_signal_while_final_mp4_is_written_finishes_it_then_stops(tmp_path, capsys, monkeypatch, one_thread,
                                                                  resumed):
    """M2 and the background job: SIGINT ignored when the process started (a script's `cmd &`) is still taken;
    one that comes during the final encode lets final.mp4 be written whole, then exits 130 saying so (a resumed
    run whose frames are all written too)."""
    from nst.video import run as vrun
    clip = clip_file(tmp_path, 2)
    out = tmp_path / "run"
    if resumed:
        code, err = cli(capsys, video_args(out, clip))
        assert code == 0, err
        os.unlink(out / "final.mp4")
    real = vrun.write_video

    def signalled(*args, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kw)

    monkeypatch.setattr(vrun, "write_video", signalled)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code, err = cli(capsys, video_args(out, clip, *(["resume=true"] if resumed else [])))
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted by SIGINT after the video finished; all outputs are in {out}"
    assert vio.probe(str(out / "final.mp4")).frames == 2 and (out / "metrics.json").exists()


def test_a_chunk_takes_its_seam_only_from_a_previous_chunk_made_like_it_and_a_resume_keeps_it(tmp_path):
    """W6: an older sweep's chunk (another loss.style_weight) is no seam; W7: a resumed chunk that started from a
    seam still records it (its metrics get the seam's warping error, not null)."""
    from nst.config import to_yaml
    from nst.images import to_tensor
    from nst.sweep.batch import Work, seam_of
    from nst.sweep.plan import pair_config, plan
    from nst.video.resume import save_progress
    from nst.video.run import prepare_video
    cfg = _chunked_sweep(tmp_path, [clip_file(tmp_path, 4)])
    cfg.video.steps_later, cfg.model.weights = 2, "random"
    first, second = plan(cfg)
    os.makedirs(os.path.join(first.dir, "frames"))
    for t, im in enumerate(pan(2), 1):
        im.save(os.path.join(first.dir, "frames", f"{t:05d}.png"))
    for name in ("final.mp4", "metrics.json"):
        with open(os.path.join(first.dir, name), "w") as f:
            f.write(json.dumps({"frames": 2}))
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


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_clips_frames_are_decoded_when_used_and_never_all_kept(tmp_path, monkeypatch, kind):
    """L3: reading a clip keeps its first frame only; going through it keeps at most Frames.KEEP; any frame asked
    for again, in any order, is the frame a single pass gives."""
    monkeypatch.setattr(vio.Frames, "KEEP", 4)
    n = 24
    if kind == "file":
        source = clip_file(tmp_path, n)
    else:
        source = str(tmp_path / "frames")
        os.mkdir(source)
        for t, im in enumerate(pan(n)):
            im.save(os.path.join(source, f"{t}.png"))
    clip = vio.read_clip(source, 48, start=2)
    frames = clip.frames
    assert len(frames) == n - 2 and list(frames.kept) == [0]
    once = [im.tobytes() for im in frames]
    assert len(frames.kept) == 4
    for t in (20, 3, 3, 21, 0, 13, 12, 11, 2):
        assert frames[t].tobytes() == once[t]
        assert len(frames.kept) <= 4
    assert frames[-1].tobytes() == once[-1] and [im.tobytes() for im in frames[5:8]] == once[5:8]
    from nst.video.resume import digest_frames
    assert clip.digest == digest_frames(frames)


def test_interrupted_in_the_first_frame_says_to_run_again_not_to_resume(tmp_path, capsys, monkeypatch, one_thread):
    """M1: nothing is written before frame 1 ends, so a resume command would fail with "no progress.json"."""
    from nst.video import run as vrun
    real = vrun.build_module

    def signalled(*args, **kw):
        os.kill(os.getpid(), signal.SIGINT)  # held until the frame's first step ends
        return real(*args, **kw)

    monkeypatch.setattr(vrun, "build_module", signalled)
    clip = clip_file(tmp_path, 2)
    code, err = cli(capsys, video_args(tmp_path / "run", clip))
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last == "interrupted by SIGINT in frame 1/2, before any frame was written; run the same command again " \
                   "to start over"
    monkeypatch.setattr(vrun, "build_module", real)
    code, err = cli(capsys, video_args(tmp_path / "run", clip))
    assert code == 0, err
