"""The README's masks picture (`make masks`): the sky of Tübingen after The Starry Night, the town after Matisse.

1. The masks, by a colour threshold, not by hand: a pixel is sky if it is blue (blue channel well above red) and
   every pixel above it in its column is sky too (so the river's reflection is not); a 5x5 median filter cleans the
   edge. The rest of the picture is the other region: the two masks are a partition.
2. train.py with configs/masks.yaml (data.style=[starry night, matisse], masks.content=[sky, town]).
3. docs/images/masks.jpg: the content with the regions tinted (what W&B shows) | the result.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from PIL import Image, ImageFilter

from .images import open_rgb, to_tensor
from .masks import overlay
from .model.guides import Regions

CONTENT = "assets/tubingen.jpg"
MASKS = ("assets/tubingen_sky.png", "assets/tubingen_town.png")
CONFIG = "configs/masks.yaml"
PICTURE = "docs/images/masks.jpg"


def sky_and_town(image: Image.Image, lead: float = 0.08) -> tuple[Image.Image, Image.Image]:
    """Two "L" masks of the image's size: its sky (blue, reached from the top edge down each column) and the rest."""
    rgb = to_tensor(image)[0]  # [3, H, W] in [0, 1]
    blue = (rgb[2] - rgb[0] > lead) & (rgb[2] > 0.45)
    sky = torch.cumprod(blue.to(torch.uint8), dim=0).bool()  # stops at the first non-blue pixel from the top
    mask = Image.fromarray((sky.numpy() * 255).astype("uint8"), "L").filter(ImageFilter.MedianFilter(5))
    town = mask.point(lambda v: 255 - v)
    return mask, town


def main(argv: list[str]) -> int:
    content = open_rgb(CONTENT)
    sky, town = sky_and_town(content)
    for mask, path in zip((sky, town), MASKS):
        mask.save(path)
    share = sum(sky.histogram()[128:]) / (sky.width * sky.height)
    print(f"wrote {MASKS[0]} ({share:.0%} of the picture) and {MASKS[1]}")
    out = "outputs/masks"
    code = subprocess.call([sys.executable, "train.py", "--config", CONFIG, f"output.dir={out}", *argv])
    if code:
        return code
    result = Image.open(os.path.join(out, "final.png")).convert("RGB")
    shown = overlay(content.resize(result.size, Image.Resampling.LANCZOS), Regions([sky, town]))
    sheet = Image.new("RGB", (2 * result.width + 8, result.height), (255, 255, 255))
    sheet.paste(shown, (0, 0))
    sheet.paste(result, (result.width + 8, 0))
    sheet.save(PICTURE, quality=90)
    print(f"wrote {PICTURE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
