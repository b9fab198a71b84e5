"""Reliability (docs/reliability.md): bad input, interruption and resume, non-finite losses, atomic writes and
untrusted files, through the real entry points.

Exit codes and stderr are checked on `train.py` in a subprocess where the process matters (signals, a full
disk, a representative set of bad inputs); the rest of the bad-input matrix goes through `nst.cli.main`, the
function train.py calls, in this process (a subprocess costs seconds of imports each).
"""

from __future__ import annotations

import ast
import errno
import glob
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import CONTENT, ROOT, STYLE

from nst.runner import checkpoint as ckpt_mod
from nst.cli import main as cli_main
from nst.errors import ImageError, OutputError
from nst.files import atomic_write, save_json, save_png, save_text
from nst.images import open_rgb, to_pil

# Single-threaded torch: on a shared 2-core machine, 2 threads are 20-30x slower for these tiny convolutions.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
       "PYTHONDONTWRITEBYTECODE": "1"}
FINAL_OUTPUTS = ("final.png", "metrics.json", "config.yaml", "last.ckpt")


def tiny(out, *extra, size=48, steps=3) -> list[str]:
    return [f"data.content={CONTENT}", f"data.style={STYLE}", f"data.size={size}", f"trainer.max_steps={steps}",
            "model.weights=random", "logger.mode=disabled", "trainer.enable_progress_bar=false",
            "trainer.precision=32", f"output.dir={out}", *extra]


def popen(args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def train(args, timeout=240, **kw) -> subprocess.CompletedProcess:
    p = popen(args, **kw)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(capsys, args) -> tuple[int, str]:
    """nst.cli.main as train.py calls it: (exit status, stderr)."""
    code = cli_main(list(args))
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *words):
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-2000:]
    for w in words:
        assert w in errors[0], (w, errors[0])


def leftovers(folder) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, ".*.tmp")))


# ----------------------------------------------------------------------------- bad image files

def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size in its header (a decompression bomb costs nothing to make)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def noise_png(size=(64, 48), mode="RGB") -> bytes:
    gen = torch.Generator().manual_seed(1)
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=gen, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(noise_png())
    start = data.index(b"IDAT") + 4
    for i in range(start + 20, start + 60):
        data[i] ^= 0x5A  # the chunk's CRC no longer matches
    return bytes(data)


def make_bad(tmp_path, kind: str) -> tuple[str, list[str]]:
    """A bad content file and the words its error must contain."""
    path = tmp_path / f"bad-{kind}"
    if kind == "missing":
        return str(path) + ".jpg", ["no such file"]
    if kind == "directory":
        path.mkdir()
        return str(path), ["is a directory"]
    if kind == "not_an_image":
        path.write_text("name,score\nada,1\n")
        return str(path), ["not an image file"]
    if kind == "zero_bytes":
        path.write_bytes(b"")
        return str(path), ["empty file"]
    if kind == "truncated_jpeg":
        data = open(CONTENT, "rb").read()
        path.write_bytes(data[: len(data) // 3])
        return str(path), ["corrupt or truncated"]
    if kind == "truncated_png":
        data = noise_png()
        path.write_bytes(data[: len(data) // 2])
        return str(path), ["corrupt or truncated"]
    if kind == "corrupt_png":
        path.write_bytes(corrupt_png())
        return str(path), ["corrupt or truncated"]
    if kind == "bomb":
        path.write_bytes(png_header_only(100_000, 100_000))
        return str(path), ["too large to load safely", str(Image.MAX_IMAGE_PIXELS)]
    raise ValueError(kind)


BAD_FILES = ["missing", "directory", "not_an_image", "zero_bytes", "truncated_jpeg", "truncated_png", "corrupt_png",
             "bomb"]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_image_file_is_one_line_naming_the_file_exit_2_and_no_output(kind, tmp_path, capsys, one_thread):
    bad, words = make_bad(tmp_path, kind)
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out, f"data.content={bad}"))
    assert_one_line_error(code, err, bad, *words)
    assert not out.exists()


def test_bad_style_and_init_files_are_named_too(tmp_path, capsys, one_thread):
    bad, _ = make_bad(tmp_path, "truncated_jpeg")
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out, f"data.style=[{STYLE},{bad}]"))
    assert_one_line_error(code, err, bad, "corrupt or truncated")
    code, err = cli(capsys, tiny(out, f"init={tmp_path}/nope.png"))
    assert_one_line_error(code, err, "nope.png", "no such file")
    assert not out.exists()


def test_decompression_bomb_warning_zone_is_an_error_too(tmp_path):
    # Between 1x and 2x the limit Pillow only warns; we refuse as well, before decoding a pixel.
    side = int((Image.MAX_IMAGE_PIXELS * 1.5) ** 0.5)
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(side, side))
    with pytest.raises(ImageError, match="too large to load safely"):
        open_rgb(str(path))


def test_images_too_small_for_the_network_say_why_and_the_minimum(tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out, size=8))
    assert_one_line_error(code, err, "data.size", "too small for VGG19", "at least 16 px")
    thin = tmp_path / "thin.png"
    Image.new("RGB", (400, 10), (10, 200, 30)).save(thin)
    code, err = cli(capsys, tiny(out, f"data.style={thin}"))  # a 400x10 style at 48 px would be 48x1
    assert_one_line_error(code, err, "thin.png", "too small for VGG19", "at least 16 px")
    code, err = cli(capsys, tiny(out, f"data.content={thin}", size=64))
    assert_one_line_error(code, err, "thin.png", "64x2", "at least 16 px")
    assert not out.exists()


# ----------------------------------------------------------------------------- image modes

def test_image_modes_are_converted_not_rejected(tmp_path):
    red = (200, 30, 40)

    def saved(im, name, **kw):
        path = tmp_path / name
        im.save(path, **kw)
        return str(path)

    gray = open_rgb(saved(Image.new("L", (8, 6), 90), "gray.png"))
    assert gray.mode == "RGB" and gray.getpixel((3, 3)) == (90, 90, 90)

    la = Image.new("LA", (8, 6), (90, 255))
    la.putpixel((0, 0), (90, 0))  # fully transparent: white, like a browser on a white page
    im = open_rgb(saved(la, "gray_alpha.png"))
    assert im.getpixel((3, 3)) == (90, 90, 90) and im.getpixel((0, 0)) == (255, 255, 255)

    pal = Image.new("RGB", (8, 6), red).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert open_rgb(saved(pal, "palette.png")).getpixel((3, 3)) == red

    rgba = Image.new("RGBA", (8, 6), red + (255,))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half-transparent black on white: mid grey
    im = open_rgb(saved(rgba, "rgba.png"))
    assert im.getpixel((3, 3)) == red and im.getpixel((0, 0)) == (255, 255, 255)
    assert all(abs(c - 127) <= 1 for c in im.getpixel((1, 0)))

    cmyk = Image.new("RGB", (16, 16), red).convert("CMYK")
    im = open_rgb(saved(cmyk, "cmyk.jpg", quality=95))
    assert all(abs(a - b) <= 8 for a, b in zip(im.getpixel((8, 8)), red)), im.getpixel((8, 8))

    deep = Image.new("I;16", (8, 6), 65535)
    deep.putpixel((0, 0), 32896)  # 16-bit values scale to 8 bits (128 * 257), they are not clipped
    im = open_rgb(saved(deep, "sixteen.png"))
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    assert im.getpixel((3, 3)) == (255, 255, 255) and im.getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_honoured(tmp_path):
    # Stored 40 wide x 20 high with a red left half; orientation 6 means "rotate 90 degrees clockwise to view".
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    shown = open_rgb(str(path))
    assert shown.size == (20, 40)
    top, bottom = shown.getpixel((10, 5)), shown.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60, (top, bottom)


def test_a_run_on_unusual_image_modes_succeeds(tmp_path, capsys, one_thread):
    content = tmp_path / "content.png"
    Image.open(CONTENT).convert("RGB").resize((64, 48)).convert("LA").save(content)
    style16 = tmp_path / "style16.png"
    Image.open(STYLE).convert("L").resize((64, 48)).convert("I").point(lambda v: v * 257).convert("I;16").save(style16)
    style_cmyk = tmp_path / "style.jpg"
    Image.open(STYLE).convert("CMYK").resize((64, 48)).save(style_cmyk)
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out, f"data.content={content}", f"data.style=[{style16},{style_cmyk}]",
                                 "output.checkpoint=false", steps=2))
    assert code == 0, err[-2000:]
    assert Image.open(out / "final.png").size == (48, 36)
    assert not (out / "last.ckpt").exists()  # output.checkpoint=false: no checkpoint for a finished run


# ----------------------------------------------------------------------------- config and weights

def evil_file(path, marker) -> None:
    """A pickle that runs a command when loaded without weights_only."""
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    torch.save({"state_dict": {"target": Evil()}, "nst": {"format": 1}}, path)


def make_config_case(tmp_path, case: str, monkeypatch) -> tuple[list[str], list[str]]:
    """Overrides that make one config mistake, and the words the error must contain."""
    if case == "unknown_key":
        return ["loss.styel_weight=3"], ["loss.styel_weight"]
    if case == "wrong_type":
        return ["data.size=big"], ["data.size", "big"]
    if case == "unknown_layer":
        return ["model.style_layers=[conv1_1,conv9_9]"], ["model.style_layers", "conv9_9"]
    if case == "unknown_weights_name":
        return ["model.weights=vgg16"], ["model.weights", "vgg16"]
    if case == "corrupt_weights_file":
        path = tmp_path / "vgg.pth"
        path.write_bytes(os.urandom(4096))
        return [f"model.weights={path}"], ["model.weights", str(path), "not a readable weights file"]
    if case == "wrong_shape_weights":
        path = tmp_path / "vgg.pth"
        torch.save({f"features.{i}.weight": torch.zeros(8, 3, 3, 3) for i in (0,)} |
                   {"features.0.bias": torch.zeros(8)}, path)
        return [f"model.weights={path}"], ["model.weights", "wrong shape for conv1_1", "(64, 3, 3, 3)"]
    if case == "torchvision_unavailable":
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
        monkeypatch.setenv("NST_TORCHVISION_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")  # nothing listens
        return ["model.weights=torchvision"], ["model.weights=torchvision", "could not be downloaded"]
    if case == "size_zero":
        return ["data.size=0"], ["data.size", "positive"]
    if case == "size_negative":
        return ["data.size=-5"], ["data.size", "positive"]
    if case == "negative_weight":
        return ["loss.style_weight=-1"], ["loss.style_weight", ">= 0"]
    if case == "nan_weight":
        return ["loss.content_weight=nan"], ["loss.content_weight", "finite"]
    if case == "output_dir_not_writable":
        blocker = tmp_path / "a-file"
        blocker.write_text("in the way")
        return [f"output.dir={blocker}/run"], ["output.dir", "cannot write"]
    raise ValueError(case)


CONFIG_CASES = ["unknown_key", "wrong_type", "unknown_layer", "unknown_weights_name", "corrupt_weights_file",
                "wrong_shape_weights", "torchvision_unavailable", "size_zero", "size_negative", "negative_weight",
                "nan_weight", "output_dir_not_writable"]


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_mistake_is_one_line_naming_the_key_exit_2_and_no_output(case, tmp_path, capsys, monkeypatch,
                                                                        one_thread):
    overrides, words = make_config_case(tmp_path, case, monkeypatch)
    out = tmp_path / "out"
    code, err = cli(capsys, tiny(out) + overrides)
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_unwritable_output_dir_when_permissions_apply(tmp_path, capsys, one_thread):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere; the 'a file in the way' case covers this as root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = cli(capsys, tiny(locked / "run"))
    assert_one_line_error(code, err, "output.dir", "Permission denied")


def test_train_py_bad_input_exit_status_and_stderr(tmp_path):
    """The process itself: status 2, stderr exactly one `error:` line, no output folder."""
    bad, words = make_bad(tmp_path, "truncated_jpeg")
    shapes = tmp_path / "shapes.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 5, 5), "conv1_1.bias": torch.zeros(64)}, shapes)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = {  # name: (overrides, words in the error, nothing else on stderr)
        "truncated_jpeg": ([f"data.content={bad}"], [bad, *words], True),
        "wrong_shape_weights": ([f"model.weights={shapes}"], ["wrong shape for conv1_1"], True),
        # found after the Trainer is built, so Lightning's own start-up lines may come before it
        "unwritable": ([f"output.dir={blocker}/run"], ["output.dir", "cannot write"], False),
    }
    procs = {k: popen(tiny(tmp_path / f"out-{k}", *extra)) for k, (extra, _, _) in cases.items()}  # in parallel
    for kind, p in procs.items():
        out, err = p.communicate(timeout=240)
        _, words, alone = cases[kind]
        assert_one_line_error(p.returncode, err, *words)
        assert not alone or len(err.strip().splitlines()) == 1, (kind, err[-2000:])
        assert out == "" and not (tmp_path / f"out-{kind}").exists()


# ----------------------------------------------------------------------------- interrupt and resume

ADAM = ["optim.name=adam", "optim.lr=0.02", "scales.min=32", "scales.steps=20", "seed=3"]
ADAM_STEPS = 80  # scale 34 px for steps 0-19, 48 px for 20-79


def target_of(path) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["target"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted Adam run: its last.ckpt holds the final float image."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = train(tiny(out, *ADAM, steps=ADAM_STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def interrupt_after(out, sig, after_step: int, extra=()) -> subprocess.CompletedProcess:
    """Start a run that saves every step, send `sig` once step_<after_step>.png exists."""
    p = popen(tiny(out, *ADAM, "output.save_every=1", *extra, steps=ADAM_STEPS))
    marker = os.path.join(out, f"step_{after_step:05d}.png")
    deadline = time.time() + 240
    while not os.path.exists(marker) and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)


@pytest.mark.parametrize("sig, after_step, code", [
    (signal.SIGINT, 5, 130),  # resumed run crosses into the second scale
    (signal.SIGTERM, 25, 143),  # checkpoint taken at the second scale: the target is resized on load
])
def test_signal_writes_image_and_checkpoint_and_resume_matches_uninterrupted(sig, after_step, code, tmp_path,
                                                                             reference):
    out = tmp_path / "run"
    proc = interrupt_after(out, sig, after_step)
    assert proc.returncode == code, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(sig).name} at step ")
    assert f"resume with: python train.py --config {out}/config.yaml resume=true" in last
    assert "Traceback" not in proc.stderr
    assert (out / "interrupted.png").exists() and (out / "last.ckpt").exists() and (out / "config.yaml").exists()
    assert not (out / "final.png").exists() and not (out / "metrics.json").exists()
    assert not leftovers(out)

    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    step = saved["nst"]["step"]
    assert after_step <= step < ADAM_STEPS and saved["global_step"] == step
    # interrupted.png is the checkpoint's image: what you see is what a resume continues from.
    assert list(Image.open(out / "interrupted.png").getdata()) == list(to_pil(saved["state_dict"]["target"]).getdata())

    resumed = train(["--config", str(out / "config.yaml"), "resume=true", "output.save_every=0"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "final.png").exists() and (out / "metrics.json").exists()
    seconds = json.loads((out / "metrics.json").read_text())["seconds"]
    assert seconds > saved["nst"]["seconds"] > 0  # the interrupted part counts too
    diff = (target_of(out / "last.ckpt") - target_of(reference / "last.ckpt")).abs().max().item()
    assert diff <= 1e-5, diff
    assert list(Image.open(out / "final.png").getdata()) == list(Image.open(reference / "final.png").getdata())


def test_checkpoint_holds_target_and_optimizer_state_only(reference):
    path = reference / "last.ckpt"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    target = saved["state_dict"]["target"]
    assert list(saved["state_dict"]) == ["target"] and tuple(target.shape) == (1, 3, 36, 48)
    [adam] = saved["optimizer_states"]
    assert set(adam["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    tensors = [t for t in _tensors(saved)]
    assert sum(t.numel() for t in tensors) <= 3 * target.numel() + 16  # target + two moments (+ Adam's step)
    size = os.path.getsize(path)
    assert size < 3 * target.numel() * 4 + 32_000, size  # ~62 KB of floats and a little structure: not 80 MB


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def test_lbfgs_checkpoint_drops_the_history_and_a_finished_run_can_be_extended(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, steps=4))
    assert code == 0, err[-2000:]
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    [lbfgs] = saved["optimizer_states"]
    # no history: the resumed run's first step is a first step again, with its line search
    assert lbfgs["state"] == {} and lbfgs["param_groups"][0]["line_search"] == "first"
    assert os.path.getsize(out / "last.ckpt") < saved["state_dict"]["target"].numel() * 4 + 32_000

    code, err = cli(capsys, tiny(out, "resume=true", steps=4))  # already there
    assert_one_line_error(code, err, "resume:", "already at step 4", "trainer.max_steps")
    code, err = cli(capsys, ["--config", str(out / "config.yaml"), "resume=true", "trainer.max_steps=7"])
    assert code == 0, err[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 7


def test_resume_problems_are_one_line_errors_before_anything_is_written(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", f"no checkpoint at {out}/last.ckpt")
    assert not out.exists()

    code, err = cli(capsys, tiny(out, *ADAM, steps=25))  # a finished 25-step run at 48 px, Adam
    assert code == 0, err
    before = sorted(os.listdir(out))
    for overrides, words in [
        (["data.size=64", "scales.min=0", "trainer.max_steps=30"], ["holds a 48x36 image", "expects 64x48"]),
        (["optim.name=lbfgs", "trainer.max_steps=30"], ["optim.name=adam", "optim.name=lbfgs"]),
    ]:
        code, err = cli(capsys, tiny(out, *ADAM, "resume=true", *overrides))
        assert_one_line_error(code, err, "resume:", *words)
    (out / "last.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    code, err = cli(capsys, tiny(out, *ADAM, "resume=true", steps=30))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint")
    assert sorted(os.listdir(out)) == before

    (out / "final.png").unlink()  # now it looks like an unfinished run: starting over says what it replaces
    with pytest.warns(UserWarning, match="from an earlier run and will be replaced; add resume=true"):
        code, err = cli(capsys, tiny(out, *ADAM, steps=25))
    assert code == 0, err


def test_second_signal_stops_at_once_without_a_checkpoint(tmp_path, capsys, monkeypatch, one_thread):
    from nst.model.module import StyleTransferModule
    losses = StyleTransferModule.losses

    def signalling_losses(self, image):
        if self.global_step == 2:  # in the middle of the third step: Ctrl-C, then Ctrl-C again
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))  # the handler runs between bytecodes
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100))
        return losses(self, image)

    monkeypatch.setattr(StyleTransferModule, "losses", signalling_losses)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, steps=10))
    assert code == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGINT during step 3:")
    assert (out / "interrupted.png").exists() and not (out / "last.ckpt").exists()
    assert not (out / "final.png").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # the guard gave the signal back


# ----------------------------------------------------------------------------- non-finite losses

def test_inf_loss_stops_with_one_line_and_keeps_the_last_good_image(tmp_path):
    out = tmp_path / "run"
    proc = train(tiny(out, "loss.style_weight=1e40"))  # finite in the config, inf in float32 (0.2 of it per layer too)
    assert_one_line_error(proc.returncode, proc.stderr, "loss became inf at step 0", f"{out}/last_good.png")
    assert sorted(os.listdir(out)) == ["last_good.png"]
    with Image.open(CONTENT) as c:  # after 0 steps the last good image is the initial one: the content
        expected = c.convert("RGB").resize((48, 36), Image.Resampling.LANCZOS)
    assert list(Image.open(out / "last_good.png").getdata()) == list(expected.getdata())


def test_overflowing_update_stops_with_one_line(tmp_path, capsys, one_thread):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, "optim.name=adam", "optim.lr=1e39"))
    assert_one_line_error(code, err, "overflowed float32 at step 0", "optim.lr", "last_good.png")
    assert (out / "last_good.png").exists() and not (out / "final.png").exists()


# ----------------------------------------------------------------------------- atomic writes

def test_interrupted_writes_leave_the_old_file_whole_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    save_json({"loss": 1.0}, str(path))
    old = path.read_bytes()

    def half_then(exc):
        def write(f):
            f.write(b'{"loss": 0.')
            raise exc
        return write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), half_then(KeyboardInterrupt()))
    with pytest.raises(OutputError, match=r"cannot write .*metrics.json \(No space left on device\)"):
        atomic_write(str(path), half_then(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert path.read_bytes() == old and not leftovers(tmp_path)

    save_png(Image.new("RGB", (4, 4)), str(tmp_path / "a.png"))
    save_text("a: 1\n", str(tmp_path / "c.yaml"))
    assert oct(os.stat(tmp_path / "a.png").st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old checkpoint")

    def failing_save(obj, filepath):
        with open(filepath, "wb") as f:
            f.write(b"half a checkp")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    batch = {"state_dict": {"target": torch.zeros(1, 3, 2, 2)}, "optimizer_states": [],
             "nst": {"evaluations": [1], "initial_loss": [1.0]}}
    with pytest.raises(OutputError, match="No space left on device"):
        ckpt_mod.PairCheckpointIO([str(tmp_path)]).save_checkpoint(batch, str(path))
    assert path.read_bytes() == b"old checkpoint" and not leftovers(tmp_path)


def test_full_disk_is_one_line_naming_output_dir_and_no_partial_file(tmp_path):
    # RLIMIT_FSIZE makes every write past 3000 bytes fail (EFBIG; Python ignores SIGXFSZ), like a full disk.
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
    out = tmp_path / "run"
    proc = train(tiny(out, steps=2), preexec_fn=limit)
    assert_one_line_error(proc.returncode, proc.stderr, "output.dir: cannot write", f"{out}/final.png")
    assert os.listdir(out) == []  # no final.png, no metrics, no temporary file


# ----------------------------------------------------------------------------- untrusted files

def _seed_images() -> list[bytes]:
    small = Image.open(CONTENT).convert("RGB").resize((24, 16))
    out = []
    for fmt, mode in (("PNG", "RGB"), ("PNG", "P"), ("PNG", "LA"), ("PNG", "I;16"), ("JPEG", "RGB"), ("JPEG", "CMYK"),
                      ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("PPM", "RGB"), ("TGA", "RGB")):
        buf = io.BytesIO()
        (small.convert("L").convert("I").convert(mode) if mode == "I;16" else small.convert(mode)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def damaged_images(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[i] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[i:]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[i:i + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=200, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), damaged_images()))
def test_image_loader_on_random_and_damaged_bytes_only_raises_image_error(data):
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        start = time.time()
        try:
            im = open_rgb(f.name)
        except ImageError as e:
            assert f.name in str(e) and "\n" not in str(e)
        else:
            assert im.mode == "RGB" and im.width > 0 and im.height > 0
        assert time.time() - start < 2


def test_weights_and_checkpoints_never_unpickle_code(tmp_path, capsys, one_thread):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    evil_file(weights, marker)
    code, err = cli(capsys, tiny(tmp_path / "out1", f"model.weights={weights}"))
    assert_one_line_error(code, err, "model.weights", "not a readable weights file")

    out = tmp_path / "out2"
    out.mkdir()
    evil_file(out / "last.ckpt", marker)
    code, err = cli(capsys, tiny(out, "resume=true"))
    assert_one_line_error(code, err, "resume:", "not a readable checkpoint")
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """Static guard for future code: torch.load, load_state_dict_from_url and Trainer.fit(ckpt_path=...)."""
    src = os.path.join(ROOT, "src", "nst")
    checked = 0
    for path in glob.glob(os.path.join(src, "**", "*.py"), recursive=True):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            kw = {k.arg: k.value for k in node.keywords}
            if name in ("load", "load_state_dict_from_url") and ast.unparse(node.func) in (
                    "torch.load", "load_state_dict_from_url") or (name == "fit" and "ckpt_path" in kw):
                checked += 1
                value = kw.get("weights_only")
                assert isinstance(value, ast.Constant) and value.value is True, \
                    f"{os.path.basename(path)}:{node.lineno}: {ast.unparse(node)[:80]} needs weights_only=True"
    assert checked >= 4
