"""Video runs (nst.video.run): the temporal loss against the per-frame baseline, resume mid-video, W&B, no device
work after a frame's teardown. Tiny clips (tests/helpers/clips.py): a pan across a photograph with a known
motion, and cuts of the repository's Big Buck Bunny clip."""

from __future__ import annotations

import json
import os

import pytest

from helpers.clips import pan_clip, video_args
from helpers.train import assert_one_line_error, cli
from nst.video import encode
from nst.video import flow as flows


# ----------------------------------------------------------------------------- whole videos

def test_the_temporal_loss_lowers_the_warping_error_against_the_per_frame_baseline(tmp_path, capsys, one_thread):
    clip = pan_clip(tmp_path, n=4)
    results = {}
    for temporal in ("true", "false"):
        out = tmp_path / f"t-{temporal}"
        code, err = cli(capsys, video_args(out, clip, f"video.temporal={temporal}", "video.temporal_weight=1000",
                                           steps=8))
        assert code == 0, err
        results[temporal] = json.loads((out / "metrics.json").read_text())
        p = encode.probe(str(out / "final.mp4"))
        assert (p.frames, p.fps, p.size, p.audio) == (4, 10, (48, 32), None)
        assert sorted(os.listdir(out / "frames")) == [f"{t:05d}.png" for t in (1, 2, 3, 4)]
    on, off = results["true"], results["false"]
    assert on["warping_error"] < 0.5 * off["warping_error"], (on["warping_error"], off["warping_error"])
    assert [r["steps"] for r in on["per_frame"]] == [8, 4, 4, 4]
    assert [r["steps"] for r in off["per_frame"]] == [8, 8, 8, 8]
    assert on["per_frame"][0]["temporal_loss"] == 0 and on["per_frame"][1]["temporal_loss"] > 0


def test_a_killed_video_resumes_at_its_next_frame_keeping_frames_and_flow(tmp_path, capsys, monkeypatch, one_thread):
    from nst.video import run as vrun
    clip = pan_clip(tmp_path, n=4)
    out = tmp_path / "run"
    real = vrun._fit_frame
    calls = []

    def dies_at_frame_3(group, *args):
        if group[0].next == 2:
            raise SystemExit("killed")  # nothing after it runs, like SIGKILL
        calls.append(group[0].next)
        return real(group, *args)

    monkeypatch.setattr(vrun, "_fit_frame", dies_at_frame_3)
    with pytest.raises(SystemExit):
        cli(capsys, video_args(out, clip, steps=8))
    assert sorted(os.listdir(out / "frames")) == ["00001.png", "00002.png"] and not (out / "final.mp4").exists()
    kept = {p: os.stat(out / p).st_mtime_ns for p in ("frames/00001.png", "frames/00002.png", "flow/00002_1.npz")}
    monkeypatch.setattr(vrun, "_fit_frame", lambda group, *args: (calls.append(group[0].next), real(group, *args)))
    computed = []
    real_get = flows.FlowCache.get

    def counting_get(self, t, j=1):
        before = self.computed
        result = real_get(self, t, j)
        computed.extend([(t, j)] * (self.computed - before))
        return result

    monkeypatch.setattr(flows.FlowCache, "get", counting_get)
    code, err = cli(capsys, video_args(out, clip, "resume=true", steps=8))
    assert code == 0, err
    assert calls == [0, 1, 2, 3]  # frames 3 and 4 only in the resumed run
    assert {p: os.stat(out / p).st_mtime_ns for p in kept} == kept
    # frame 3's flow (2, 1) may have been computed ahead, while frame 2 optimized, before the kill
    assert (1, 1) not in computed and (3, 1) in computed and len(computed) == len(set(computed))
    assert encode.probe(str(out / "final.mp4")).frames == 4
    assert [r["frame"] for r in json.loads((out / "metrics.json").read_text())["per_frame"]] == [1, 2, 3, 4]


def test_resume_without_progress_is_one_line(tmp_path, capsys):
    clip = pan_clip(tmp_path, n=2)
    code, err = cli(capsys, video_args(tmp_path / "none", clip, "resume=true", steps=8))
    assert_one_line_error(code, err, "resume", "progress.json")



def test_wandb_gets_the_frames_losses_the_temporal_loss_and_the_videos(tmp_path, capsys, one_thread):
    from helpers.wandb_records import offline_runs
    out = tmp_path / "run"
    args = [a for a in video_args(out, pan_clip(tmp_path, n=3), steps=8) if not a.startswith("logger.mode")]
    code, err = cli(capsys, [*args, "logger.mode=offline", "trainer.max_steps=3", "video.steps_later=2"])
    assert code == 0, err
    (run,) = offline_runs(str(out))
    assert {"loss", "style_loss", "temporal_loss", "frame", "frame/loss", "frame/temporal_loss"} <= run.history_keys
    assert {"video/_type", "video_side_by_side/_type"} <= run.history_keys
    assert encode.probe(str(out / "side_by_side.mp4")).size == (48 * 2 + 4, 32)


def test_a_video_computes_nothing_on_a_module_after_its_frames_teardown(tmp_path, capsys, one_thread):
    from test_device import watching_teardown
    with watching_teardown() as watch:
        code, err = cli(capsys, video_args(tmp_path / "run", pan_clip(tmp_path, n=3), "trainer.max_steps=3",
                                           "video.steps_later=2", steps=8))
    assert code == 0, err
    assert watch.total > 0 and watch.after == 0, (watch.total, watch.after)
