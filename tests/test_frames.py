"""What the frames of a video share (nst.video.run, nst.video.temporal): frame t+1's flows are computed in a helper
thread while frame t optimizes, the style Grams once per clip, and the VGG19 is never moved to the CPU by a
frame's teardown."""

from __future__ import annotations

import collections
import os
import threading

from helpers.clips import clip_file, video_args
from helpers.train import cli


def test_the_next_frames_flow_is_computed_while_the_frame_before_optimizes(tmp_path, capsys, monkeypatch,
                                                                          one_thread):
    from nst.video import run as vrun
    from nst.video.flow import FlowCache

    optimizing = collections.defaultdict(threading.Event)  # frame -> set once its fit has started
    frame = [None]
    calls = []  # (t, j, thread, whether frame t-1 was optimizing by then)
    real_fit, real_fit_frame, real_get = vrun.fit, vrun._fit_frame, FlowCache.get

    def fit_frame(group, *args):
        frame[0] = group[0].next
        return real_fit_frame(group, *args)

    def fit(trainer, module, *args, **kw):
        optimizing[frame[0]].set()
        return real_fit(trainer, module, *args, **kw)

    def get(self, t, j=1):
        helper = threading.current_thread() is not threading.main_thread()
        # a helper waits for the frame before to start optimizing: in a serial loop the flow would come first
        calls.append((t, j, helper, optimizing[t - 1].wait(60) if helper else None))
        return real_get(self, t, j)

    monkeypatch.setattr(vrun, "_fit_frame", fit_frame)
    monkeypatch.setattr(vrun, "fit", fit)
    monkeypatch.setattr(FlowCache, "get", get)
    out = tmp_path / "run"
    code, err = cli(capsys, video_args(out, clip_file(tmp_path, 3)))
    assert code == 0, err
    ahead = [c for c in calls if c[2]]
    assert ahead == [(1, 1, True, True), (2, 1, True, True)], calls
    assert sorted(os.listdir(out / "frames")) == ["00001.png", "00002.png", "00003.png"]
    # the flows for the temporal targets all came from the helper; the main thread only reads them back for the
    # warping error at the end
    assert [c[:2] for c in calls if not c[2]] == [(1, 1), (2, 1)] * 2


def test_a_clips_style_grams_are_computed_once_for_all_its_frames(tmp_path, capsys, monkeypatch, one_thread):
    from nst.model import tiling as model_tiling
    from nst.model.gram import gram
    counted = []

    def counting_gram(features):
        counted.append(tuple(features.shape))
        return gram(features)

    monkeypatch.setattr(model_tiling, "gram", counting_gram)  # the style targets' Grams (tiling.grams), not the loss's
    code, err = cli(capsys, video_args(tmp_path / "run", clip_file(tmp_path, 3), "scales.min=0"))
    assert code == 0, err
    assert len(counted) == 5  # conv1_1 .. conv5_1 of the one style, for frame 1; frames 2 and 3 reuse them
    counted.clear()
    code, err = cli(capsys, video_args(tmp_path / "histogram", clip_file(tmp_path, 3), "scales.min=0",
                                       "color.preserve=histogram"))
    assert code == 0, err
    assert len(counted) == 15  # a style matched to each frame's colours: its Grams are the frame's own


def test_no_frames_teardown_moves_the_vgg_to_the_cpu(tmp_path, capsys, monkeypatch, one_thread):
    """Lightning's teardown calls module.cpu() after every fit: KeepOnDevice takes the shared VGG19 out of the
    module first (on a GPU it would otherwise go to the host and back for every frame)."""
    import torch
    from nst.model.vgg import VGG19Features
    moves = []
    real_apply = VGG19Features._apply

    def recording_apply(self, fn, *args, **kw):
        moves.append(fn.__qualname__.split(".")[1])  # Module.cpu.<locals>.<lambda>, Module.to.<locals>.convert
        return real_apply(self, fn, *args, **kw)

    monkeypatch.setattr(VGG19Features, "_apply", recording_apply)
    code, err = cli(capsys, video_args(tmp_path / "run", clip_file(tmp_path, 3)))
    assert code == 0, err
    assert "to" in moves and "cpu" not in moves, moves

    from nst.runner.loop import KeepOnDevice
    module = torch.nn.Module()
    module.extractor = vgg = torch.nn.Linear(2, 2, device="meta")  # "on the device": meta cannot go to the CPU
    module.target = torch.nn.Parameter(torch.zeros(2))
    KeepOnDevice("extractor").on_train_end(None, module)
    module.cpu()  # what the teardown does: it would raise "Cannot copy out of meta tensor" on the VGG
    assert vgg.weight.device.type == "meta" and not hasattr(module, "extractor")
