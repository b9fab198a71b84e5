"""Faults of video runs found by trying them as an adversary would (docs/reliability.md, docs/video.md): a resume
that mixes inputs, frames replaced or lost, paths that are globs only by their characters, frame order, frames and
flows found damaged on resume, signals at the edges of a run, and memory that grew with the clip's length."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading

import pytest
from PIL import Image

from helpers import CONTENT, STYLE, STYLE2
from helpers.clips import clip_file, pan, video_args
from helpers.train import assert_one_line_error, cli, popen, tiny, train
from nst.config import load_config
from nst.video import decode, encode


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
    assert encode.probe(str(out / "final.mp4")).frames == 6
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
        clip = decode.read_clip(source, 48)
        assert [im.getpixel((0, 0))[0] for im in clip.frames] == [i * 20 for i in range(1, 13)]
        assert decode.count_frames(source, 2, 3) == 3


def test_an_existing_file_with_glob_characters_is_that_file(tmp_path, capsys):
    """(d) W3: `photo[1].jpg` is an image, `what?.jpg` too; a sweep takes them as they are."""
    from nst.sweep.plan import expand
    photo = tmp_path / "photo[1].jpg"
    shutil.copy(CONTENT, photo)
    shutil.copy(CONTENT, tmp_path / "photo1.jpg")  # what the glob `photo[1].jpg` would match instead
    shutil.copy(CONTENT, tmp_path / "what?.jpg")
    assert not decode.is_video(str(photo)) and not decode.is_video(str(tmp_path / "what?.jpg"))
    assert expand("contents", [str(photo)]) == [str(photo)]
    assert expand("contents", [str(tmp_path / "photo*.jpg")]) == [str(tmp_path / "photo1.jpg"), str(photo)]
    code, err = cli(capsys, tiny(tmp_path / "out", steps=2)[1:] + [f"data.content={photo}"])
    assert code == 0, err
    assert (tmp_path / "out" / "final.png").exists()


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
    assert encode.probe(str(out / "final.mp4")).frames == 3
    assert os.stat(out / "frames" / "00001.png").st_mtime_ns == first


def test_a_chunk_that_decodes_fewer_frames_than_were_planned_is_one_line(tmp_path):
    """W5: a chunk named frames-6-10 must hold 5 frames, not what is left of a shortened clip."""
    from nst.video.run import prepare_video
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, im in enumerate(pan(7)):
        im.save(folder / f"{i:03d}.png")
    cfg = load_config(None, video_args(tmp_path / "out", folder, "video.chunk=5", "video.start=5",
                                       "video.max_frames=5"))
    with pytest.raises(decode.VideoError, match="frames 6-10 were planned, 2 decode"):
        prepare_video(cfg)
    cfg.video.chunk = 0  # train.py's video.max_frames is "at most"
    assert prepare_video(cfg).n == 2


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
    assert encode.probe(str(out / "final.mp4")).frames == 2 and (out / "metrics.json").exists()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_clips_frames_are_decoded_when_used_and_never_all_kept(tmp_path, monkeypatch, kind):
    """L3: reading a clip keeps its first frame only; going through it keeps at most Frames.KEEP; any frame asked
    for again, in any order, is the frame a single pass gives."""
    monkeypatch.setattr(decode.Frames, "KEEP", 4)
    n = 24
    if kind == "file":
        source = clip_file(tmp_path, n)
    else:
        source = str(tmp_path / "frames")
        os.mkdir(source)
        for t, im in enumerate(pan(n)):
            im.save(os.path.join(source, f"{t}.png"))
    clip = decode.read_clip(source, 48, start=2)
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
