"""What a first run leaves and says: stylize() cleans up after itself, the progress bar ends on the final loss, and a
rerun into a folder with outputs says what it replaces, the same way for an image and a video."""

import os
import re
import tempfile
from fractions import Fraction

from PIL import Image

from helpers import CONTENT, STYLE
from helpers.train import cli, tiny


def test_stylize_leaves_nothing_in_the_temporary_directory(tmp_path, monkeypatch):
    from nst import stylize
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    image = stylize(CONTENT, STYLE, data__size=32, trainer__max_steps=2, model__weights="random",
                    trainer__precision="32", trainer__enable_progress_bar=False)
    assert isinstance(image, Image.Image) and max(image.size) == 32
    assert tempfile.gettempdir() == str(scratch) and os.listdir(scratch) == []


def test_the_progress_bar_ends_on_the_final_loss(tmp_path, monkeypatch, capsys):
    """The bar's last loss is the final float32 evaluation that metrics.json and the last line give, not the
    loss of the last step's (mixed precision) evaluation."""
    from nst.config import load_config
    from nst.runner import loop
    from nst.runner import run as runner
    from nst.runner.sinks import ProgressBar
    monkeypatch.setattr(loop, "progress_sink", lambda *a, **k: ProgressBar())  # as on a terminal
    cfg = load_config(None, [o for o in tiny(tmp_path / "run", steps=4, size=32)
                             if not o.startswith("trainer.enable_progress_bar")])
    result = runner.run(cfg)
    shown = re.findall(r"loss=([-+.\w]+)", capsys.readouterr().out)
    assert shown and shown[-1] == f"{result.metrics['loss']:.4g}", (shown, result.metrics["loss"])


def test_a_rerun_of_a_video_says_what_it_replaces_as_an_image_run_does(tmp_path, capsys):
    """(An image run's line: test_checkpoint.py's resume test.)"""
    from nst.video import encode
    photo = Image.open(CONTENT).convert("RGB").resize((40, 24))
    clip = str(tmp_path / "clip.mp4")
    encode.write_video(clip, [photo, photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], Fraction(10), crf=0)
    video = tmp_path / "video"
    args = [*tiny(video, steps=2, size=32), f"data.content={clip}", "video.steps_later=1"]
    code, err = cli(capsys, args)
    assert code == 0 and "replacing" not in err, err
    code, err = cli(capsys, args)
    assert code == 0, err
    assert f"{video}: replacing final.mp4, frames, metrics.json, progress.json of an earlier run" in err, err


def test_a_run_on_the_cpu_repeats_itself_bit_for_bit(tmp_path):
    """What the README's Reproducibility section promises for the CPU: the same config (here with noise init,
    so the seed matters) gives the same losses and the same image; another seed does not."""
    import numpy as np

    from nst.config import load_config
    from nst.runner.run import run

    def once(name, seed):
        cfg = load_config(None, tiny(tmp_path / name, "init=noise", f"seed={seed}", size=32, steps=3))
        result = run(cfg)
        return result.metrics["loss"], np.asarray(result.image)
    (loss_a, image_a), (loss_b, image_b), (loss_c, _) = once("a", 1), once("b", 1), once("c", 2)
    assert loss_a == loss_b and np.array_equal(image_a, image_b)
    assert loss_c != loss_a
