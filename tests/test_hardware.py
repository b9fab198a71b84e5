"""Machine-dependent settings: precision choice and the CPU allocator."""

import subprocess
import sys

import pytest

from nst.runner.hardware import resolve_precision

_FAULTS = """
import resource, sys, torch
from nst.runner.hardware import reuse_freed_memory
x = torch.rand(1, 16, 256, 256, requires_grad=True)
w = torch.randn(16, 16, 3, 3)
def evaluation():  # 4 MB activations, allocated and freed by every pass
    y = x
    for _ in range(4):
        y = torch.nn.functional.conv2d(y, w, padding=1).relu()
    y.square().mean().backward()
def faults():
    for _ in range(5):  # warm-up: the heap reaches the size the passes need
        evaluation()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        evaluation()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
with reuse_freed_memory(sys.argv[1] == "tuned") as took:
    inside = faults()
print(took, inside, faults())
"""


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())


def test_precision_names():
    assert resolve_precision("32", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_bf16_natively():
    """The kernel's own CPU flags decide what `auto` must pick: bf16-mixed with AVX512-BF16 or AMX, else 32."""
    native = bool({"avx512_bf16", "amx_bf16", "amx_tile"} & _cpu_flags())
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_freed_tensors_are_reused_without_new_page_faults_and_the_defaults_come_back():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        took, inside, after = out.stdout.split()
        return took, int(inside), int(after)

    took, tuned, after = faults("tuned")
    untouched, default, _ = faults("default")
    assert (took, untouched) == ("True", "False")
    # Three passes of 4 MB activations after five warm-up ones: glibc's default faults in 11-45 thousand fresh
    # 4 KB pages here, the tuned heap none (after only two warm-up passes it sometimes still grew by 4096).
    assert default > 8_000
    assert tuned < 4_000
    assert after > 5_000  # glibc's own behaviour again once the run is over
