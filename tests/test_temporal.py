"""The temporal targets' flows (nst.video.temporal): frame t+1's flows are computed in a helper thread while frame
t optimizes, each once, and the frames still come out."""

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
    from nst.model import module as model_module
    from nst.model.losses import gram
    counted = []

    def counting_gram(features):
        counted.append(tuple(features.shape))
        return gram(features)

    monkeypatch.setattr(model_module, "gram", counting_gram)  # the style targets' Grams, not the loss's
    code, err = cli(capsys, video_args(tmp_path / "run", clip_file(tmp_path, 3), "scales.min=0"))
    assert code == 0, err
    assert len(counted) == 5  # conv1_1 .. conv5_1 of the one style, for frame 1; frames 2 and 3 reuse them
    counted.clear()
    code, err = cli(capsys, video_args(tmp_path / "histogram", clip_file(tmp_path, 3), "scales.min=0",
                                       "color.preserve=histogram"))
    assert code == 0, err
    assert len(counted) == 15  # a style matched to each frame's colours: its Grams are the frame's own
