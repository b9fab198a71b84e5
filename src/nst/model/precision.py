"""Precision helpers: autocast that also works on devices without it, and TF32 on and off.

`compute_dtype` is the dtype autocast would compute in on a device (float32 when it is off), and `no_autocast`
turns it off for a block; on a device type that has no autocast (`meta`, used by the device-discipline tests)
both mean plain float32.

TF32: fast float32 convolutions for training, exact float32 where a number must mean float32. On Ampere and later GPUs, float32 matrix products and convolutions may run in TF32 (10-bit mantissa). That is
right for the training passes of a 32-true run, and wrong for the optimizer's own arithmetic (L-BFGS's dot
products decide which curvature pairs it keeps) and for the final "float32" evaluation that metrics.json
reports. `allow_tf32()` turns TF32 on for a run; `exact_float32()` turns it off inside a block, and its
`outer()` puts the run's setting back for a block nested in it (the loss evaluations inside an L-BFGS step).
On a machine without CUDA both do nothing. runner/hardware.py's `backends_restored` puts the process's own
settings back when a run ends.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def has_autocast(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type)


def compute_dtype(device_type: str) -> torch.dtype:
    """The dtype autocast computes convolutions in here (float32 where it is off or not available)."""
    if has_autocast(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return torch.float32


def no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type, enabled=False) if has_autocast(device_type) else contextlib.nullcontext()


def current_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """The autocast in force now, as a context that can be re-entered later (inside a block that turned it off)."""
    if not has_autocast(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.get_autocast_dtype(device_type),
                          enabled=torch.is_autocast_enabled(device_type))


# TF32 goes through the legacy API only: torch.set_float32_matmul_precision and torch.backends.cudnn.allow_tf32.
# torch >= 2.9 also has `fp32_precision` settings, but once one is set the legacy getter raises ("mix of the legacy
# and new APIs"), and Lightning's CUDAAccelerator.setup_device reads exactly that getter on every Ampere+ GPU. The
# legacy setters are accepted by every torch from 2.5 on, and on 2.9+ they also reset a new-API setting.


def tf32_settings() -> tuple:
    """The process's TF32 settings, to be put back with `set_tf32_settings`. Where someone set the new API (and the
    legacy getter refuses), its own values."""
    try:
        return "legacy", torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    except RuntimeError:  # torch >= 2.9 after a new-API setting
        return "new", torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision


def set_tf32_settings(state: tuple) -> None:
    api, matmul, conv = state
    if api == "legacy":
        torch.set_float32_matmul_precision(matmul)
        torch.backends.cudnn.allow_tf32 = conv
    else:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = matmul, conv


def _set_tf32(on: bool) -> None:
    torch.set_float32_matmul_precision("high" if on else "highest")
    torch.backends.cudnn.allow_tf32 = on


def allow_tf32() -> None:
    """TF32 for float32 products and convolutions (the training passes of a 32-true run on a GPU)."""
    if torch.cuda.is_available():
        _set_tf32(True)


class exact_float32(contextlib.AbstractContextManager):
    """No TF32 inside the block (see the module docstring)."""

    def __enter__(self) -> "exact_float32":
        self.saved = tf32_settings() if torch.cuda.is_available() else None
        if self.saved is not None:
            _set_tf32(False)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            set_tf32_settings(self.saved)

    @contextlib.contextmanager
    def outer(self) -> Iterator[None]:
        """The setting from before this block, for a block nested in it."""
        if self.saved is None:
            yield
            return
        inner = tf32_settings()
        set_tf32_settings(self.saved)
        try:
            yield
        finally:
            set_tf32_settings(inner)
