"""A fake CUDA GPU on the CPU: torch.cuda's queries answer as a chosen card would, so that the project's GPU-only
branches (and Lightning's own CUDA checks) run in the default suite.

What is faked: the queries (is_available, device_count, get_device_capability, get_device_name, mem_get_info,
current_device, is_bf16_supported with and without emulation, max_memory_allocated, reset_peak_memory_stats,
synchronize, empty_cache) and Lightning's `num_cuda_devices`. What is not: anything that needs a real device
(torch.cuda.set_device, a tensor on `cuda`). Lightning's `CUDAAccelerator.setup_device` therefore runs
`_check_cuda_matmul_precision` for real and fails at its next line, `torch.cuda.set_device`: `REAL_CUDA_CALL`
matches that failure. Tensors "on the GPU" come from `torch._subclasses.FakeTensorMode` instead (`fake_tensors`).

The backend settings (TF32, cuDNN autotuning) are put back when the fake ends, so a test cannot leak them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator
from unittest import mock

import pytest
import torch

# What torch says at the first call that needs a real CUDA device on a machine without one.
REAL_CUDA_CALL = r"NVIDIA driver|no CUDA GPUs|Torch not compiled with CUDA|CUDA driver|cudaGetDeviceCount"
MIX_OF_APIS = "mix of the legacy and new APIs"

CARDS = {(7, 0): "Tesla V100-SXM2-32GB", (8, 0): "NVIDIA A100-SXM4-80GB", (9, 0): "NVIDIA H200"}


@dataclass
class FakeGPU:
    """The card the fake answers for; tests change `free` or `peak` while it is on."""
    capability: tuple[int, int] = (9, 0)
    count: int = 1
    free: int = 139 * 2**30
    total: int = 141 * 2**30
    peak: int = 123 * 2**20
    current: int = 0
    calls: list = field(default_factory=list)  # (name, args) of every faked call, in order

    @property
    def name(self) -> str:
        return CARDS.get(self.capability, f"Fake GPU sm_{self.capability[0]}{self.capability[1]}")

    def _log(self, name, *args):
        self.calls.append((name, args))

    def called(self, name: str) -> list:
        return [args for n, args in self.calls if n == name]

    def patches(self) -> dict:
        def index(device=None) -> int:
            if device is None:
                return self.current
            if isinstance(device, int):
                return device
            device = torch.device(device)
            return self.current if device.index is None else device.index

        def checked(device=None) -> int:
            i = index(device)
            if not 0 <= i < self.count:
                raise AssertionError(f"fake GPU: device {i} asked for, {self.count} visible")
            return i

        def capability(device=None):
            checked(device)
            return self.capability

        def name(device=None):
            self._log("get_device_name", checked(device))
            return self.name

        def mem_get_info(device=None):
            self._log("mem_get_info", checked(device))
            return self.free, self.total

        def bf16(including_emulation: bool = True) -> bool:
            return self.capability[0] >= 8 or (including_emulation and self.capability[0] >= 5)

        def max_memory_allocated(device=None) -> int:
            self._log("max_memory_allocated", checked(device))
            return self.peak

        def reset_peak_memory_stats(device=None) -> None:
            self._log("reset_peak_memory_stats", checked(device))

        def synchronize(device=None) -> None:
            self._log("synchronize", device)

        return {"is_available": lambda: self.count > 0, "device_count": lambda: self.count,
                "get_device_capability": capability, "get_device_name": name, "mem_get_info": mem_get_info,
                "current_device": lambda: self.current, "is_bf16_supported": bf16,
                "max_memory_allocated": max_memory_allocated, "reset_peak_memory_stats": reset_peak_memory_stats,
                "synchronize": synchronize, "empty_cache": lambda: None}


def backend_settings() -> tuple:
    """The process's TF32 and cuDNN settings through the legacy API (which also resets a new-API setting)."""
    try:
        matmul = torch.get_float32_matmul_precision()
    except RuntimeError:  # a test left the new API set: the legacy getter refuses
        matmul = "highest"
    return matmul, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark


def set_backend_settings(state: tuple) -> None:
    torch.set_float32_matmul_precision(state[0])
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = state[1], state[2]


@contextlib.contextmanager
def fake_gpu(capability=(9, 0), **kw) -> Iterator[FakeGPU]:
    """torch.cuda answering as one (or `count`) card(s) of `capability` would, Lightning's checks included."""
    from lightning.fabric.accelerators import cuda as fabric_cuda
    import lightning.pytorch.accelerators.cuda as pl_cuda

    gpu = FakeGPU(capability=tuple(capability), **kw)
    saved = backend_settings()
    fabric_cuda._check_cuda_matmul_precision.cache_clear()  # lru_cache(1): every test must run Lightning's check afresh
    with contextlib.ExitStack() as stack:
        for attr, fake in gpu.patches().items():
            stack.enter_context(mock.patch.object(torch.cuda, attr, fake))
        stack.enter_context(mock.patch.object(pl_cuda, "num_cuda_devices", lambda: gpu.count))
        try:
            yield gpu
        finally:
            fabric_cuda._check_cuda_matmul_precision.cache_clear()
            set_backend_settings(saved)


def fake_tensors():
    """Tensors whose device is `cuda` with no GPU (a mismatch with a CPU tensor raises)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    return FakeTensorMode(allow_non_fake_inputs=True)


@pytest.fixture(params=[(8, 0), (9, 0)], ids=["sm80", "sm90"])
def ampere_gpu(request):
    """One Ampere-or-later card (A100, H200), faked."""
    with fake_gpu(request.param) as gpu:
        yield gpu
