"""The README's print-size picture (`make print`): train.py with configs/print.yaml (2048 px, its two largest scales
evaluated block by block), then docs/images/print.jpg: the whole picture scaled down, a box where the crop is, and
beside it a crop at 100% around a corner where four blocks meet. Ticks above and beside the crop mark the block
boundaries (from the run's metrics.json), so a seam, if there were one, would be where they point.

    python -m nst.print_showcase [key=value ...]   # the keys go to train.py
    python -m nst.print_showcase --compose-only    # only the picture, from an earlier run's outputs/print
                                                   # (or its output.dir=...)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PIL import Image, ImageDraw

CONFIG = "configs/print.yaml"
OUT = "outputs/print"
PICTURE = "docs/images/print.jpg"
CROP = 512  # side of the 100% crop, px
VIEW = 512  # height of the scaled-down whole picture, px
TICK = 10  # px of the strips that carry the boundary ticks
GAP = 8


def crop_box(width: int, height: int, block: int) -> tuple[int, int, int, int]:
    """A CROP x CROP window centred on the block corner nearest a point two thirds across and a third down (in
    Tübingen: the church tower, roofs and sky), inside the picture."""
    cx = min(max(round(width * 2 / 3 / block) * block, block), width - block)
    cy = min(max(round(height / 3 / block) * block, block), height - block)
    x0 = min(max(cx - CROP // 2, 0), width - CROP)
    y0 = min(max(cy - CROP // 2, 0), height - CROP)
    return x0, y0, x0 + CROP, y0 + CROP


def compose(final: Image.Image, block: int) -> Image.Image:
    """The whole picture (scaled to VIEW px high, the crop boxed) | the crop at 100% with boundary ticks."""
    x0, y0, x1, y1 = crop_box(final.width, final.height, block)
    scale = VIEW / final.height
    view = final.resize((round(final.width * scale), VIEW), Image.Resampling.LANCZOS)
    ImageDraw.Draw(view).rectangle([round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale)],
                                   outline=(255, 40, 40), width=2)
    sheet = Image.new("RGB", (view.width + GAP + CROP + TICK, TICK + VIEW), (255, 255, 255))
    sheet.paste(view, (0, TICK))
    left = view.width + GAP
    sheet.paste(final.crop((x0, y0, x1, y1)), (left, TICK))
    draw = ImageDraw.Draw(sheet)
    for x in range((x0 // block + 1) * block, x1, block):  # boundaries between block columns, above the crop
        draw.line([(left + x - x0, 0), (left + x - x0, TICK - 2)], fill=(0, 0, 0), width=2)
    for y in range((y0 // block + 1) * block, y1, block):  # and between block rows, to its right
        draw.line([(left + CROP + 2, TICK + y - y0), (left + CROP + TICK, TICK + y - y0)], fill=(0, 0, 0), width=2)
    return sheet


def main(argv: list[str]) -> int:
    compose_only = "--compose-only" in argv
    argv = [a for a in argv if a != "--compose-only"]
    out = next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith("output.dir=")), OUT)
    if not compose_only:
        code = subprocess.call([sys.executable, "train.py", "--config", CONFIG, f"output.dir={OUT}", *argv])
        if code:
            return code
    try:
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
    except FileNotFoundError:
        print(f"error: {out}/metrics.json: no finished run there (make print runs one)", file=sys.stderr)
        return 2
    if not metrics.get("tiling"):
        print(f"error: {out}/metrics.json: the run was not tiled; nothing to show", file=sys.stderr)
        return 2
    final = Image.open(os.path.join(out, "final.png")).convert("RGB")
    compose(final, metrics["tiling"]["block"]).save(PICTURE, quality=92)
    print(f"wrote {PICTURE} ({final.width}x{final.height}, {metrics['tiling']['blocks_per_evaluation'][-1]} blocks "
          f"of {metrics['tiling']['block']} px, {metrics['total_seconds'] / 60:.0f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
