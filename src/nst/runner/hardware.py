"""Picks the fastest safe settings for the machine: device, precision, cuDNN autotuning, CPU allocator."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

import torch

from ..model.precision import allow_tf32, set_tf32_settings, tf32_settings

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (glibc's malloc.h)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


def resolve_accelerator(accelerator: str) -> str:
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


def check_accelerator(accelerator: str, optim_name: str) -> None:
    """A one-line ConfigError for an accelerator this run cannot use: a GPU asked for where none is visible (naming
    CUDA_VISIBLE_DEVICES, the usual reason), or Apple's MPS with L-BFGS, whose float64 solves MPS cannot run."""
    from ..errors import ConfigError
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        shown = "unset" if visible is None else repr(visible)
        raise ConfigError(f"trainer.accelerator: {accelerator} asked for, but torch sees no CUDA GPU "
                          f"(CUDA_VISIBLE_DEVICES is {shown}); use trainer.accelerator=auto or cpu")
    if accelerator == "mps" and optim_name == "lbfgs":
        raise ConfigError("trainer.accelerator: mps cannot run L-BFGS's float64 solves; use optim.name=adam or "
                          "trainer.accelerator=cpu")


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run 2-3x faster than float32 there."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # older torch
        return False


def gpu_has_native_bf16() -> bool:
    """Ampere and later. torch.cuda.is_bf16_supported() alone also says yes where bf16 is emulated (V100, T4),
    several times slower than float32 there."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch without the argument
        return torch.cuda.get_device_capability()[0] >= 8


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto` -> bf16-mixed where bf16 is fast (Ampere+ GPUs, CPUs with AVX512-BF16/AMX), else 32-true.

    Gram matrices and losses always run in float32 whatever this returns (see model/gram.py and model/loss.py).
    """
    if precision != "auto":
        return {"32": "32-true"}.get(precision, precision)
    if accelerator in ("gpu", "cuda"):
        return "bf16-mixed" if torch.cuda.is_available() and gpu_has_native_bf16() else "32-true"
    if accelerator == "cpu":
        return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"
    return "32-true"


def describe_device() -> str:
    """What benchmark numbers were measured on: the GPUs, else the CPU's model and core count."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU, {os.cpu_count()} cores ({model})"


def _glibc():
    """The C library when it is glibc (mallopt and malloc_trim); elsewhere there is nothing to tune."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True):
    """glibc, while optimizing on the CPU: serve big tensors from the heap and keep freed memory for the next pass.

    Every evaluation allocates and frees the same large activations. By default glibc maps big blocks afresh and
    returns them on free, so every pass pays page faults on fresh zeroed pages: ~15 thousand per evaluation
    and about 5% of its time at 512 px; peak memory grows ~2% (`make bench-parts`). On exit the
    defaults come back and the freed memory goes back to the system. Yields whether the setting took.
    """
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    took = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    try:
        yield took
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def tune_backends(accelerator: str, cudnn_benchmark: bool = False) -> None:
    """On a GPU: cuDNN autotuning as configured, and TF32 for the float32 training passes (the optimizer's own
    products and the final evaluation turn it off: model/precision.py)."""
    if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = cudnn_benchmark
        allow_tf32()


@contextlib.contextmanager
def backends_restored():
    """The process's TF32 and cuDNN settings as they were before the block (a run, `stylize()`): a notebook's own
    float32 products must not stay in TF32 after a run turned it on."""
    tf32, benchmark = tf32_settings(), torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        set_tf32_settings(tf32)
        torch.backends.cudnn.benchmark = benchmark
