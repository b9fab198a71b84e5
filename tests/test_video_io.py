"""Video in and out (nst.video.decode, nst.video.encode): a clip's frames, rate and audio round trip; folders and
globs of frames; every bad input is one line that writes nothing; rotation, variable rate and odd sizes."""

from __future__ import annotations

import os
from fractions import Fraction

import pytest
from PIL import Image

from helpers import CONTENT
from helpers.clips import BUNNY, pan, pan_clip, video_args
from helpers.train import assert_one_line_error, cli
from nst.video import decode, encode


# ----------------------------------------------------------------------------- decode and encode

def test_a_cut_of_a_clip_round_trips_with_its_frame_count_rate_and_audio(tmp_path):
    clip = decode.read_clip(BUNNY, 64, start=10, max_frames=8)
    assert len(clip.frames) == 8 and clip.fps == 25 and clip.audio
    assert clip.size == (64, 36) and clip.start_time == pytest.approx(0.4)
    out = str(tmp_path / "cut.mp4")
    encode.write_video(out, clip.frames, clip.fps, clip.source, clip.start_time, clip.duration)
    p = encode.probe(out)
    assert (p.frames, p.fps, p.size, p.codec, p.pix_fmt, p.audio) == (8, 25, (64, 36), "h264", "yuv420p", "aac")
    assert 12 <= p.audio_packets <= 17  # 0.32 s of 48 kHz AAC: 1024 samples a packet, about 15
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_frames_from_a_folder_and_a_glob_are_a_clip(tmp_path):
    for t, im in enumerate(pan(3)):
        im.save(tmp_path / f"f{t:03d}.png")
    folder = decode.read_clip(str(tmp_path), 48, fps=12)
    glob_ = decode.read_clip(str(tmp_path / "f*.png"), 48, max_frames=2)
    assert len(folder.frames) == 3 and folder.fps == 12 and len(glob_.frames) == 2
    assert decode.is_video(str(tmp_path)) and decode.is_video(str(tmp_path / "*.png")) and not decode.is_video(CONTENT)



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
    code, err = cli(capsys, video_args(out, path, *extra, steps=8))
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_a_huge_frame_is_one_line(tmp_path, capsys, monkeypatch):
    clip = pan_clip(tmp_path, n=2)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the pan's 48x32 frames are "huge" now
    out = tmp_path / "out"
    code, err = cli(capsys, video_args(out, clip, steps=8))
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
        for i, im in enumerate(pan(3)):
            f = av.VideoFrame.from_image(im)
            f.pts, f.time_base = i, Fraction(1, 10)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    clip = decode.read_clip(rotated, 48)
    assert clip.size == (32, 48) and clip.rotation in (90, 270) and len(clip.frames) == 3
    # variable frame rate: every frame kept, encoded at the average rate, and said so
    vfr = str(tmp_path / "vfr.mp4")
    with av.open(vfr, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.codec_context.time_base = Fraction(1, 100)
        for i, (im, pts) in enumerate(zip(pan(5), (0, 10, 40, 50, 90))):
            f = av.VideoFrame.from_image(im)
            f.pts, f.time_base = pts, Fraction(1, 100)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    clip = decode.read_clip(vfr, 48)
    assert len(clip.frames) == 5 and clip.variable_rate and "variable frame rate" in clip.notes[0]
    # odd sides: a 51x37 clip becomes an even-sided final.mp4 with every frame
    odd = str(tmp_path / "odd")
    os.mkdir(odd)
    for t, im in enumerate(pan(2, size=(51, 37))):
        im.save(os.path.join(odd, f"{t:03d}.png"))
    out = tmp_path / "out"
    code, err = cli(capsys, video_args(out, odd, "video.fps=8", size=51, steps=8))
    assert code == 0, err
    p = encode.probe(str(out / "final.mp4"))
    assert p.frames == 2 and p.size[0] % 2 == 0 and p.size[1] % 2 == 0 and p.fps == 8
