"""Reading images (nst.images, docs/reliability.md): every bad file is one line naming it with exit status 2 and no
output; any image mode, EXIF orientation, and random or damaged bytes never raise anything but ImageError."""

from __future__ import annotations

import io
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import CONTENT, STYLE
from helpers.bad_images import BAD_FILES, make_bad, png_header_only
from helpers.train import assert_one_line_error, cli, tiny
from nst.errors import ImageError
from nst.images import open_rgb


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


@settings(max_examples=200, deadline=None, derandomize=True, database=None,  # no wall clock: a busy machine is slow
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), damaged_images()))
def test_image_loader_on_random_and_damaged_bytes_only_raises_image_error(data):
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        try:
            im = open_rgb(f.name)
        except ImageError as e:
            assert f.name in str(e) and "\n" not in str(e)
        else:
            assert im.mode == "RGB" and im.width > 0 and im.height > 0
            assert im.width * im.height <= Image.MAX_IMAGE_PIXELS  # what bounds its decoding time: the bomb guard
