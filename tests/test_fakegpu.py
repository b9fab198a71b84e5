"""The GPU-only branches on a CUDA GPU faked on the CPU (helpers/fakegpu.py), with Lightning's own checks.

Every run on an Ampere-or-later GPU once crashed before its first step: the project set TF32 through torch's new
`fp32_precision` API, and Lightning's `CUDAAccelerator.setup_device` then read the legacy getter, which raises on a
mix of the two. These tests run that path up to the first call that needs a real device."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.accelerators import cuda as fabric_cuda
from lightning.pytorch.accelerators.cuda import CUDAAccelerator

from helpers.fakegpu import MIX_OF_APIS, REAL_CUDA_CALL, ampere_gpu, fake_gpu  # noqa: F401 (a fixture)
from helpers.train import tiny
from nst.config import load_config
from nst.model.precision import exact_float32
from nst.runner.hardware import resolve_accelerator, resolve_precision, tune_backends

pytestmark = pytest.mark.fakegpu


def new_api_only_allow_tf32() -> None:
    """allow_tf32 as it was when every GPU run crashed (torch >= 2.9's new API alone)."""
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"


def test_the_fake_answers_as_the_card_would():
    with fake_gpu((7, 0)) as gpu:
        assert torch.cuda.is_available() and torch.cuda.device_count() == 1
        assert torch.cuda.get_device_capability(0) == (7, 0) and "V100" in torch.cuda.get_device_name()
        assert torch.cuda.is_bf16_supported() and not torch.cuda.is_bf16_supported(including_emulation=False)
        assert torch.cuda.mem_get_info(0) == (gpu.free, gpu.total)
    assert not torch.cuda.is_available()  # the real machine again


@pytest.mark.parametrize("capability, precision", [((7, 0), "32-true"), ((8, 0), "bf16-mixed"),
                                                   ((9, 0), "bf16-mixed")])
def test_auto_picks_the_gpu_and_native_bf16_only(capability, precision):
    with fake_gpu(capability):
        assert resolve_accelerator("auto") == "gpu"
        assert resolve_precision("auto", "gpu") == precision


def test_lightnings_own_check_accepts_our_tf32_settings(ampere_gpu):
    tune_backends("gpu", cudnn_benchmark=True)
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cudnn.allow_tf32
    with exact_float32() as exact:  # L-BFGS's own arithmetic, with the loss evaluations nested in it
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.allow_tf32
        with exact.outer():
            assert torch.get_float32_matmul_precision() == "high"
        fabric_cuda._check_cuda_matmul_precision(torch.device("cuda", 0))
    assert torch.get_float32_matmul_precision() == "high"
    fabric_cuda._check_cuda_matmul_precision.cache_clear()
    with pytest.raises(RuntimeError, match=REAL_CUDA_CALL):  # past the check, at torch.cuda.set_device
        CUDAAccelerator().setup_device(torch.device("cuda", 0))


@pytest.mark.parametrize("tf32", ["ours", "new-api-only"])
def test_train_on_a_faked_h200_gets_past_lightnings_precision_check(tmp_path, monkeypatch, tf32):
    """train.py's run (nst.runner.run.run) with trainer.accelerator=gpu: it fails at the first real CUDA call, as
    it must without a GPU, and not at Lightning's precision check. The new-API-only allow_tf32 shows the fake
    catching the crash, and the process's settings come back either way."""
    from nst.runner import hardware
    from nst.runner.run import run
    if tf32 == "new-api-only":
        if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            pytest.skip("torch < 2.9 has no new TF32 API")
        monkeypatch.setattr(hardware, "allow_tf32", new_api_only_allow_tf32)
    cfg = load_config(None, tiny(tmp_path / "run", "trainer.accelerator=gpu", "trainer.precision=auto",
                                 "trainer.cudnn_benchmark=true"))
    with fake_gpu((9, 0)):
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.benchmark = False
        with pytest.raises(RuntimeError) as raised:
            run(cfg)
        assert raised.traceback[-2].name == "set_device" or tf32 != "ours"
        if tf32 == "ours":
            assert MIX_OF_APIS not in str(raised.value)
            assert raised.match(REAL_CUDA_CALL)
        else:
            assert raised.match(MIX_OF_APIS)
        assert torch.get_float32_matmul_precision() == "highest" and not torch.backends.cudnn.benchmark


def test_a_run_puts_back_a_notebooks_new_api_setting(tmp_path):
    """Someone who set torch's new API before the run gets it back (the run itself uses the legacy one)."""
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("torch < 2.9 has no new TF32 API")
    from nst.runner.run import run
    cfg = load_config(None, tiny(tmp_path / "run", "trainer.accelerator=gpu"))
    with fake_gpu((8, 0)):
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        with pytest.raises(RuntimeError, match=REAL_CUDA_CALL):
            run(cfg)
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
