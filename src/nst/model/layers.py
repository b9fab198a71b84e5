"""VGG19's layer names and the named weight sources: plain data without torch, so that the config schema (and
`nst --help`) can check names without importing the network."""

from __future__ import annotations

import os
import re

# (block, index within block, in channels, out channels) for the 16 convolutions of VGG19.
CONVS = [
    (1, 1, 3, 64), (1, 2, 64, 64),
    (2, 1, 64, 128), (2, 2, 128, 128),
    (3, 1, 128, 256), (3, 2, 256, 256), (3, 3, 256, 256), (3, 4, 256, 256),
    (4, 1, 256, 512), (4, 2, 512, 512), (4, 3, 512, 512), (4, 4, 512, 512),
    (5, 1, 512, 512), (5, 2, 512, 512), (5, 3, 512, 512), (5, 4, 512, 512),
]
LAYERS = [f"conv{b}_{i}" for b, i, _, _ in CONVS]
"""Layer names. A layer's feature is its ReLU output (as in the paper and in neural-style)."""
NAMED_SOURCES = ("caffe", "torchvision", "random")


def looks_like_path(spec: str) -> bool:
    return spec not in NAMED_SOURCES and (os.sep in spec or bool(re.search(r"\.(pth|pt|bin|ckpt)$", spec)))
