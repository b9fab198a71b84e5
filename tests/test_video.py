"""Video (nst.video): decode/encode, flow and warping, the reliability weight, the temporal loss on any device, the
temporal loss against the per-frame baseline, resume mid-video, and bad inputs. Tiny clips made here: a pan across
a photograph with a known motion, and cuts of the repository's Big Buck Bunny clip."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import pytest
import torch
from PIL import Image

from helpers import CONTENT, ROOT, STYLE
from helpers.train import assert_one_line_error, cli
from nst.config import load_config
from nst.images import to_tensor
from nst.video import flow as flows
from nst.video import io as vio

BUNNY = os.path.join(ROOT, "assets", "bigbuckbunny.mp4")
SHIFT = 3  # pixels per frame of the pan


def pan_frames(n: int, size=(48, 32), shift: int = SHIFT) -> list[Image.Image]:
    """A camera panning right across the photograph: frame t is the crop starting at x = shift * t."""
    w, h = size
    photo = Image.open(CONTENT).convert("RGB").resize((w + shift * n + 8, h + 8), Image.Resampling.LANCZOS)
    return [photo.crop((shift * t, 4, shift * t + w, 4 + h)) for t in range(n)]


def pan_clip(tmp_path, n=4, size=(48, 32), name="pan.mp4") -> str:
    path = str(tmp_path / name)
    vio.write_video(path, pan_frames(n, size), Fraction(10), crf=0)
    return path


def video_args(out, content, *extra, size=48):
    return [f"data.content={content}", f"data.style={STYLE}", f"data.size={size}", "trainer.max_steps=8",
            "video.steps_later=4", "model.weights=random", "logger.mode=disabled", "trainer.precision=32",
            "trainer.enable_progress_bar=false", f"output.dir={out}", *extra]


# ----------------------------------------------------------------------------- decode and encode

def test_a_cut_of_a_clip_round_trips_with_its_frame_count_rate_and_audio(tmp_path):
    clip = vio.read_clip(BUNNY, 64, start=10, max_frames=8)
    assert len(clip.frames) == 8 and clip.fps == 25 and clip.audio
    assert clip.size == (64, 36) and clip.start_time == pytest.approx(0.4)
    out = str(tmp_path / "cut.mp4")
    vio.write_video(out, clip.frames, clip.fps, clip.source, clip.start_time, clip.duration)
    p = vio.probe(out)
    assert (p.frames, p.fps, p.size, p.codec, p.pix_fmt, p.audio) == (8, 25, (64, 36), "h264", "yuv420p", "aac")
    assert 12 <= p.audio_packets <= 17  # 0.32 s of 48 kHz AAC: 1024 samples a packet, about 15
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_frames_from_a_folder_and_a_glob_are_a_clip(tmp_path):
    for t, im in enumerate(pan_frames(3)):
        im.save(tmp_path / f"f{t:03d}.png")
    folder = vio.read_clip(str(tmp_path), 48, fps=12)
    glob_ = vio.read_clip(str(tmp_path / "f*.png"), 48, max_frames=2)
    assert len(folder.frames) == 3 and folder.fps == 12 and len(glob_.frames) == 2
    assert vio.is_video(str(tmp_path)) and vio.is_video(str(tmp_path / "*.png")) and not vio.is_video(CONTENT)


# ----------------------------------------------------------------------------- flow, warp, reliability

def test_the_warped_previous_frame_of_a_pan_is_the_next_frame_away_from_the_borders():
    frames = pan_frames(2, size=(64, 48))
    a, b = to_tensor(frames[0]), to_tensor(frames[1])
    known = torch.zeros(2, 48, 64)
    known[0] = SHIFT  # frame 1's pixel p is frame 0's p + (3, 0)
    assert (flows.warp(a, known) - b)[..., :, :-SHIFT].abs().max() < 1e-5
    flow = flows.dis_flow(frames[1], frames[0])  # estimated
    assert flow[0, 6:-6, 6:-9].mean().item() == pytest.approx(SHIFT, abs=0.2)
    assert (flows.warp(a, flow) - b)[..., 6:-6, 6:-9].abs().mean() < 0.01
    weight = flows.reliability(flow, flows.dis_flow(frames[0], frames[1]))
    assert weight[0, :, -SHIFT:].sum() == 0  # what enters at the right border has no earlier frame
    assert weight[0, 6:-6, 6:-9].mean() > 0.9


def test_the_reliability_weight_is_zero_where_a_moving_square_uncovers_the_background():
    h, w, d = 32, 48, 6  # a square at x 10..20 in frame t-1 moves right by d
    backward = torch.zeros(2, h, w)  # t -> t-1
    forward = torch.zeros(2, h, w)  # t-1 -> t
    backward[0, 10:20, 10 + d:20 + d] = -d
    forward[0, 10:20, 10:20] = d
    c = flows.reliability(backward, forward)[0]
    assert c[10:20, 10:10 + d].sum() == 0  # uncovered in frame t: was under the square in t-1
    assert c[12:18, 12 + d:18 + d].min() == 1  # the square itself, inside
    assert c[10:20, 20 + d - 1].sum() == 0 or c[10:20, 10 + d].sum() == 0  # a motion boundary
    assert c[25:, :].min() == 1 and c[:5, :].min() == 1  # static background far from it


def test_long_term_weights_count_each_pixel_against_its_nearest_reliable_frame():
    c = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]).view(3, 1, 1, 3)  # J=3, distances 1,2,4
    assert flows.long_term(c).view(3, 3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


# ----------------------------------------------------------------------------- the temporal loss term

def _frame_module(temporal_weight=10.0):
    from nst.runner.job import Job, prepare
    from nst.runner.loop import build_module
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=32", "scales.min=0",
                             "trainer.max_steps=2", "model.weights=random", "logger.mode=disabled"])
    return build_module([prepare(Job(cfg))], temporal_weight=temporal_weight)


def test_the_temporal_loss_is_a_buffer_term_that_moves_with_the_module_to_another_device():
    module = _frame_module(10.0)
    module.enter_scale(0)
    _, _, h, w = module.target.shape
    warped = torch.rand(1, 2, 3, h, w)
    weights = (torch.rand(1, 2, 1, h, w) > 0.5).float()
    module.objective.set_temporal(warped, weights)
    _, parts = module.losses(module.target)
    expected = 10.0 * (weights * (module.target[:, None] - warped).square()).sum() / (3 * h * w)
    assert parts["temporal_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    total = parts["content_loss"] + parts["style_loss"] + parts["temporal_loss"]
    assert parts["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    module.to("meta")
    loss, parts = module.losses(module.target)
    assert {p.device.type for p in parts.values()} == {"meta"} and "temporal_loss" in parts
    assert module.final_parts().device.type == "meta"


def test_an_image_run_has_no_temporal_part_and_a_first_frame_a_zero_one():
    assert "temporal_loss" not in _frame_module(0.0).objective.settings.part_names
    module = _frame_module(10.0)
    module.enter_scale(0)
    _, parts = module.losses(module.target)
    assert parts["temporal_loss"].item() == 0


# ----------------------------------------------------------------------------- whole videos

def test_the_temporal_loss_lowers_the_warping_error_against_the_per_frame_baseline(tmp_path, capsys, one_thread):
    clip = pan_clip(tmp_path, n=4)
    results = {}
    for temporal in ("true", "false"):
        out = tmp_path / f"t-{temporal}"
        code, err = cli(capsys, video_args(out, clip, f"video.temporal={temporal}", "video.temporal_weight=1000"))
        assert code == 0, err
        results[temporal] = json.loads((out / "metrics.json").read_text())
        p = vio.probe(str(out / "final.mp4"))
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
        cli(capsys, video_args(out, clip))
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
    code, err = cli(capsys, video_args(out, clip, "resume=true"))
    assert code == 0, err
    assert calls == [0, 1, 2, 3]  # frames 3 and 4 only in the resumed run
    assert {p: os.stat(out / p).st_mtime_ns for p in kept} == kept
    # frame 3's flow (2, 1) may have been computed ahead, while frame 2 optimized, before the kill
    assert (1, 1) not in computed and (3, 1) in computed and len(computed) == len(set(computed))
    assert vio.probe(str(out / "final.mp4")).frames == 4
    assert [r["frame"] for r in json.loads((out / "metrics.json").read_text())["per_frame"]] == [1, 2, 3, 4]


def test_resume_without_progress_is_one_line(tmp_path, capsys):
    clip = pan_clip(tmp_path, n=2)
    code, err = cli(capsys, video_args(tmp_path / "none", clip, "resume=true"))
    assert_one_line_error(code, err, "resume", "progress.json")


# ----------------------------------------------------------------------------- inputs that are wrong or odd

def _audio_only(path):
    import av
    with av.open(BUNNY) as src, av.open(path, "w", format="mp4") as out:
        a_in = src.streams.audio[0]
        a_out = out.add_stream_from_template(a_in)
        for packet in src.demux(a_in):
            if packet.dts is not None:
                packet.stream = a_out
                out.mux(packet)


def _zero_frames(path):
    import av
    with av.open(path, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()
        out.mux(s.encode(None))


@pytest.mark.parametrize("kind, words", [
    ("missing", ["no such file"]),
    ("empty", ["empty file"]),
    ("not_a_video", ["not a video file"]),
    ("truncated", ["corrupt or truncated"]),
    ("no_video_stream", ["no video stream", "audio"]),
    ("zero_frames", ["no frames"]),
    ("empty_folder", ["is a directory"]),
    ("start_past_end", ["video.start", "past the last"]),
    ("glob_of_nothing", ["no frames"]),
])
def test_a_bad_video_is_one_line_and_writes_nothing(tmp_path, capsys, kind, words):
    path = str(tmp_path / f"{kind}.mp4")
    extra = []
    if kind == "empty":
        open(path, "wb").close()
    elif kind == "not_a_video":
        open(path, "w").write("name,score\nada,1\n" * 50)
    elif kind == "truncated":
        data = open(pan_clip(tmp_path, n=6), "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif kind == "no_video_stream":
        _audio_only(path)
    elif kind == "zero_frames":
        _zero_frames(path)
    elif kind == "empty_folder":
        path = str(tmp_path / "frames")
        os.mkdir(path)
    elif kind == "glob_of_nothing":
        path = str(tmp_path / "nothing-*.png")
    elif kind == "start_past_end":
        path = pan_clip(tmp_path, n=3)
        extra = ["video.start=5"]
    out = tmp_path / "out"
    code, err = cli(capsys, video_args(out, path, *extra))
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_a_huge_frame_is_one_line(tmp_path, capsys, monkeypatch):
    clip = pan_clip(tmp_path, n=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the pan's 48x32 frames are "huge" now
    out = tmp_path / "out"
    code, err = cli(capsys, video_args(out, clip))
    assert_one_line_error(code, err, "too large")
    assert not out.exists()


def test_rotation_metadata_variable_rate_and_odd_sizes_are_handled(tmp_path, capsys, one_thread):
    import av
    # rotation: a 48x32 clip displayed a quarter turn round comes out 32x48
    rotated = str(tmp_path / "rotated.mp4")
    with av.open(rotated, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.set_display_rotation(90)
        for i, im in enumerate(pan_frames(3)):
            f = av.VideoFrame.from_image(im)
            f.pts, f.time_base = i, Fraction(1, 10)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    clip = vio.read_clip(rotated, 48)
    assert clip.size == (32, 48) and clip.rotation in (90, 270) and len(clip.frames) == 3
    # variable frame rate: every frame kept, encoded at the average rate, and said so
    vfr = str(tmp_path / "vfr.mp4")
    with av.open(vfr, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.codec_context.time_base = Fraction(1, 100)
        for i, (im, pts) in enumerate(zip(pan_frames(5), (0, 10, 40, 50, 90))):
            f = av.VideoFrame.from_image(im)
            f.pts, f.time_base = pts, Fraction(1, 100)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    clip = vio.read_clip(vfr, 48)
    assert len(clip.frames) == 5 and clip.variable_rate and "variable frame rate" in clip.notes[0]
    # odd sides: a 51x37 clip becomes an even-sided final.mp4 with every frame
    odd = str(tmp_path / "odd")
    os.mkdir(odd)
    for t, im in enumerate(pan_frames(2, size=(51, 37))):
        im.save(os.path.join(odd, f"{t:03d}.png"))
    out = tmp_path / "out"
    code, err = cli(capsys, video_args(out, odd, "video.fps=8", size=51))
    assert code == 0, err
    p = vio.probe(str(out / "final.mp4"))
    assert p.frames == 2 and p.size[0] % 2 == 0 and p.size[1] % 2 == 0 and p.fps == 8


def test_wandb_gets_the_frames_losses_the_temporal_loss_and_the_videos(tmp_path, capsys, one_thread):
    from helpers.wandb_records import offline_runs
    out = tmp_path / "run"
    args = [a for a in video_args(out, pan_clip(tmp_path, n=3)) if not a.startswith("logger.mode")]
    code, err = cli(capsys, [*args, "logger.mode=offline", "trainer.max_steps=3", "video.steps_later=2"])
    assert code == 0, err
    (run,) = offline_runs(str(out))
    assert {"loss", "style_loss", "temporal_loss", "frame", "frame/loss", "frame/temporal_loss"} <= run.history_keys
    assert {"video/_type", "video_side_by_side/_type"} <= run.history_keys
    assert vio.probe(str(out / "side_by_side.mp4")).size == (48 * 2 + 4, 32)


def test_a_video_computes_nothing_on_a_module_after_its_frames_teardown(tmp_path, capsys, one_thread):
    from test_device import watching_teardown
    with watching_teardown() as watch:
        code, err = cli(capsys, video_args(tmp_path / "run", pan_clip(tmp_path, n=3), "trainer.max_steps=3",
                                           "video.steps_later=2"))
    assert code == 0, err
    assert watch.total > 0 and watch.after == 0, (watch.total, watch.after)


# ----------------------------------------------------------------------------- videos in a sweep

def _sweep_args(out, contents, *extra):
    from helpers.sweeps import tiny
    return tiny(out, "data.size=48", "video.steps_later=2", "trainer.precision=32", *extra,
                contents=contents, styles=[STYLE, os.path.join(ROOT, "assets", "the_scream.jpg")][:2],
                mode="disabled")


@pytest.mark.parametrize("launch", ["one process", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_a_sweep_over_a_video_and_two_styles_writes_and_a_rerun_skips_and_resumes_mid_video(launch, tmp_path):
    """The first launch is one sweep process, or torchrun with two (make test-slow); the reruns are one process."""
    from helpers.sweeps import ran, summary, sweep, torchrun
    clip = pan_clip(tmp_path, n=3)
    out = tmp_path / "sweep"
    args = _sweep_args(out, [clip])
    pairs = ["pan__starry_night", "pan__the_scream"]
    first = torchrun(tmp_path, *args) if launch == "torchrun" else sweep(tmp_path, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert sorted(ran(first.stdout)) == pairs
    for name in pairs:
        assert vio.probe(str(out / name / "final.mp4")).frames == 3
        m = json.loads((out / name / "metrics.json").read_text())
        assert m["frames"] == 3 and m["batch"] == 1 and m["steps"] == 5 + 2 + 2
    rows = summary(out)
    assert [(r["pair"], r["status"], r["frames"]) for r in rows] == [(p, "done", "3") for p in pairs]
    assert all(float(r["warping_error"]) >= 0 and float(r["seconds_per_frame"]) > 0 for r in rows)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size == (3 * 48, 2 * 48)
    # the result cell is the middle frame, stylized (frames/00002.png of the 3), not a "missing" grey cell
    cell = sheet.crop((48, 48, 96, 96)).convert("L")
    assert cell.getextrema()[1] - cell.getextrema()[0] > 40

    again = sweep(tmp_path, *args)  # a rerun skips both
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert ran(again.stdout) == [] and again.stdout.count("complete, skipped") == 2
    assert [r["status"] for r in summary(out)] == ["cached", "cached"]

    # killed in frame 3 of the first pair: its frames 1-2 and their progress stay, frame 3 and the end are gone
    killed = out / pairs[0]
    progress = json.loads((killed / "progress.json").read_text())
    progress["frames"] = progress["frames"][:2]
    (killed / "progress.json").write_text(json.dumps(progress))
    for name in ("final.mp4", "metrics.json", "frames/00003.png"):
        os.unlink(killed / name)
    kept = {p: os.stat(killed / p).st_mtime_ns for p in ("frames/00001.png", "frames/00002.png", "flow/00002_1.npz")}
    resumed = sweep(tmp_path, *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert ran(resumed.stdout) == [pairs[0]]
    assert f"{pairs[0]}: running (interrupted earlier, resuming from progress.json)" in resumed.stdout
    assert {p: os.stat(killed / p).st_mtime_ns for p in kept} == kept
    m = json.loads((killed / "metrics.json").read_text())
    assert m["per_frame"][:2] == progress["frames"] and m["per_frame"][2]["frame"] == 3
    assert vio.probe(str(killed / "final.mp4")).frames == 3
    assert [r["status"] for r in summary(out)] == ["done", "cached"]


def test_two_videos_of_one_frame_size_run_as_one_batch_and_each_as_it_would_alone(tmp_path):
    from helpers.sweeps import summary, sweep
    a = pan_clip(tmp_path, n=3)
    b = str(tmp_path / "pan2.mp4")
    vio.write_video(b, pan_frames(3, shift=2), Fraction(10), crf=0)
    results = {}
    for batch in (2, 1):
        out = tmp_path / f"batch{batch}"
        proc = sweep(tmp_path, *_sweep_args(out, [a, b], f"sweep.batch={batch}", "trainer.max_steps=4",
                                            "logger.mode=disabled", "sweep.styles=[" + STYLE + "]"))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert ("in batch 1/1 of 2" in proc.stdout) == (batch == 2)
        assert [r["batch"] for r in summary(out)] == [str(batch)] * 2
        results[batch] = {name: (json.loads((out / name / "metrics.json").read_text()),
                                 [to_tensor(Image.open(out / name / "frames" / f"{t:05d}.png")) for t in (1, 2, 3)])
                          for name in ("pan__starry_night", "pan2__starry_night")}
    # A clip in a batch is the clip alone up to rounding (docs/sweep.md's "A pair in a batch is the pair alone"):
    # its own loss normalisers, temporal targets and L-BFGS rows. Rounding differs (a batched convolution sums in
    # another order) and L-BFGS grows it along a run, and each frame starts from the one before, so it grows over
    # frames too. Measured on the development CPU: frame 3's loss within 1.2% and its pixels within 0.7/255 on
    # average (1.5e-5 and 0.003/255 for the other clip). The bounds: the image batches' 2% for the losses, and
    # 2/255 for the pixels, three times the largest measured.
    for name, (together, frames) in results[2].items():
        alone, alone_frames = results[1][name]
        assert [r["steps"] for r in together["per_frame"]] == [r["steps"] for r in alone["per_frame"]]
        for r2, r1 in zip(together["per_frame"], alone["per_frame"]):
            assert r2["loss"] == pytest.approx(r1["loss"], rel=0.02), (name, r2, r1)
        for f2, f1 in zip(frames, alone_frames):
            assert (f2 - f1).abs().mean() < 2 / 255, (name, (f2 - f1).abs().mean().item())


def _seam_error(last: str, first: str, clip) -> float:
    """The warping error of a chunk's first frame against the previous chunk's last, along the original frames'
    flow."""
    before, after = clip.frames
    flow = flows.dis_flow(after, before)
    weight = flows.reliability(flow, flows.dis_flow(before, after))
    return flows.warping_error(to_tensor(Image.open(first).convert("RGB")), to_tensor(Image.open(last).convert("RGB")),
                               flow, weight)


def test_chunks_of_a_clip_are_pairs_and_a_chunk_after_a_written_one_starts_from_its_last_frame(tmp_path, capsys,
                                                                                                one_thread):
    from helpers.sweeps import summary, sweep
    clip = pan_clip(tmp_path, n=6)
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, *_sweep_args(out, [clip], "video.chunk=3", "logger.mode=disabled",
                                        "sweep.styles=[" + STYLE + "]"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first, second = "pan__starry_night__frames-1-3", "pan__starry_night__frames-4-6"
    assert [r["pair"] for r in summary(out)] == [first, second]
    assert f"{second}: running (new, its first frame from the previous chunk's last)" in proc.stdout
    m = json.loads((out / second / "metrics.json").read_text())
    assert [r["steps"] for r in m["per_frame"]] == [2, 2, 2]  # a later frame: steps_later, one scale
    inside = (json.loads((out / first / "metrics.json").read_text())["warping_error"] + m["warping_error"]) / 2
    originals = vio.read_clip(clip, 48, start=2, max_frames=2)
    seam = _seam_error(out / first / "frames" / "00003.png", out / second / "frames" / "00001.png", originals)
    assert m["seam_warping_error"] == pytest.approx(seam, rel=1e-3)
    # the same chunk with nothing before it (chunks running at once on two processes): a fresh first frame
    alone = tmp_path / "alone"
    code, err = cli(capsys, video_args(alone, clip, "trainer.max_steps=5", "video.steps_later=2", "video.start=3",
                                       "video.max_frames=3"))
    assert code == 0, err
    independent = _seam_error(out / first / "frames" / "00003.png", alone / "frames" / "00001.png", originals)
    print(f"warping error: inside the chunks {inside:.3g}, at a seam from the previous chunk {seam:.3g}, "
          f"at an independent seam {independent:.3g}")
    assert seam < 2 * inside and independent > 5 * seam
    # the last process to finish joins the chunks: the clip's frames at its rate, and the seams' errors
    joined = out / "pan__starry_night"
    assert f"pan__starry_night: 2 chunks joined, 6 frames -> {joined / 'final.mp4'}" in proc.stdout
    p = vio.probe(str(joined / "final.mp4"))
    assert (p.frames, p.fps, p.size, p.codec, p.pix_fmt, p.audio) == (6, 10, (48, 32), "h264", "yuv420p", None)
    j = json.loads((joined / "metrics.json").read_text())
    assert (j["frames"], j["fps"], j["chunks"]) == (6, 10, [first, second])
    assert j["seam_warping_error"] == [m["seam_warping_error"]]


def test_chunks_join_with_the_clips_audio_once_all_are_complete_and_only_when_newer(tmp_path):
    from omegaconf import OmegaConf
    from nst.sweep.join import join_chunks
    from nst.sweep.plan import Pair
    frames = vio.read_clip(BUNNY, 64, start=10, max_frames=6).frames
    cfg = OmegaConf.create({"output": {"dir": str(tmp_path)}, "data": {"size": 64},
                            "video": {"chunk": 3, "fps": 25.0, "crf": 18}})
    pairs, rows = [], []
    for i, start in enumerate((10, 13)):
        name = f"bigbuckbunny__s__frames-{start + 1}-{start + 3}"
        (tmp_path / name / "frames").mkdir(parents=True)
        for t in range(3):
            frames[3 * i + t].save(tmp_path / name / "frames" / f"{t + 1:05d}.png")
        (tmp_path / name / "final.mp4").write_bytes(b"")
        seam = {"seam_warping_error": 0.01} if i else {}
        (tmp_path / name / "metrics.json").write_text(json.dumps({"frames": 3, **seam}))
        pairs.append(Pair(i, BUNNY, "s.jpg", name, str(tmp_path / name), {"video.start": start, "video.max_frames": 3},
                          name.split("__")[-1], video=True))
        rows.append({"pair": name, "status": "done"})
    joined = tmp_path / "bigbuckbunny__s" / "final.mp4"
    rows[1]["status"] = "failed"
    assert join_chunks(cfg, pairs, rows) == [f"bigbuckbunny__s: not joined ({pairs[1].name} failed)"]
    assert not joined.exists()
    rows[1]["status"] = "cached"
    assert join_chunks(cfg, pairs, rows) == [f"bigbuckbunny__s: 2 chunks joined, 6 frames -> {joined}"]
    p = vio.probe(str(joined))
    assert (p.frames, p.fps, p.size, p.audio) == (6, 25, (64, 36), "aac")
    assert 8 <= p.audio_packets <= 13  # 0.24 s of 48 kHz AAC, 1024 samples a packet
    assert json.loads((joined.parent / "metrics.json").read_text())["seam_warping_error"] == [0.01]
    assert not [n for n in os.listdir(joined.parent) if n.endswith(".tmp")]
    written = joined.stat().st_mtime_ns
    assert join_chunks(cfg, pairs, rows) == [] and joined.stat().st_mtime_ns == written  # newer than every chunk


def test_a_negative_chunk_is_one_line(tmp_path, capsys):
    code, err = cli(capsys, video_args(tmp_path / "out", pan_clip(tmp_path, n=2), "video.chunk=-1"))
    assert_one_line_error(code, err, "video.chunk")
    assert not (tmp_path / "out").exists()
