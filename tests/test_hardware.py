"""Machine-dependent settings: precision choice and the CPU allocator."""

import subprocess
import sys

import pytest

from nst.hardware import resolve_precision

_FAULTS = """
import resource, sys, torch
from nst.hardware import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "tuned" else None
x = torch.rand(1, 16, 256, 256, requires_grad=True)
w = torch.randn(16, 16, 3, 3)
def evaluation():  # 4 MB activations, allocated and freed by every pass
    y = x
    for _ in range(4):
        y = torch.nn.functional.conv2d(y, w, padding=1).relu()
    y.square().mean().backward()
evaluation(); evaluation()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    evaluation()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_precision_names():
    assert resolve_precision("32", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") in ("bf16-mixed", "32-true")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_freed_tensors_are_reused_without_new_page_faults():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        took, n = out.stdout.split()
        return took, int(n)

    took, tuned = faults("tuned")
    _, default = faults("default")
    assert took == "True"
    assert default > 5_000  # fresh 4 KB pages for the activations of every pass
    assert tuned < default / 10
