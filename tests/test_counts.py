"""The training loop's host syncs and aten ops per step, counted on the CPU (nst.bench.counting): the proxies for
GPU stalls and kernel launches. The counted run has two scales and periodic checkpoints; Telemetry transfers at
fixed steps only, so nothing here depends on the machine's speed. A step reads nothing from the device, and its
cost does not grow with the L-BFGS history."""

import pytest
import torch

from nst.bench.counting import counting, loop_counts
from nst.runner.telemetry import Transfer


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    """Steps 1..39 counted: scale 32 px to step 19, 64 px after; checkpoints at steps 15 and 30."""
    folder = tmp_path_factory.mktemp("counts")
    return {(h, e): loop_counts(size=64, steps=40, history=h, log_every=e, folder=str(folder / f"{h}-{e}"),
                                checkpoint_every=15)
            for h, e in [(5, 1), (50, 10)]}


def test_no_step_reads_the_device_across_a_scale_change_and_periodic_checkpoints(counts):
    for key, c in counts.items():
        assert len(c["scales"]) == 2, c  # the counted steps include a scale change
        assert c["syncs_per_step"] == 0, (key, c)
        assert c["host_reads"] > 0, (key, c)  # the numbers do reach the host, through Telemetry's copies


def test_aten_ops_per_step_do_not_grow_with_the_history(counts):
    ops_5, ops_50 = counts[(5, 1)]["ops_per_step"], counts[(50, 10)]["ops_per_step"]  # logging adds < 1%
    assert ops_50 <= 1.1 * ops_5, (ops_5, ops_50)


def test_a_read_of_a_device_tensor_counts_and_a_read_of_a_host_copy_does_not():
    x = torch.arange(4.0)
    with counting() as c:
        float(x.sum())  # a device value: a sync on a GPU
        host = Transfer(x * 2).result()
        host.tolist()  # Telemetry's host copy
        host[1:].numpy()  # and what is computed from it alone
    assert c["syncs"] == 1 and c["host_reads"] == 2, c
