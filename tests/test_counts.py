"""The training loop's host syncs and aten ops per step, counted on the CPU (nst.bench.counts): the proxies for
GPU stalls and kernel launches. A step reads nothing back except now and then, in one transfer, and its cost
does not grow with the L-BFGS history."""

import pytest

from nst.bench.counts import loop_counts


@pytest.fixture(scope="module")
def counts():
    return {(h, e): loop_counts(size=32, steps=100, history=h, log_every=e) for h, e in [(5, 1), (50, 1), (50, 10)]}


def test_at_most_one_host_sync_per_step_and_under_a_third_when_logging_every_tenth(counts):
    assert counts[(50, 1)]["syncs_per_step"] <= 1.0, counts[(50, 1)]
    assert counts[(50, 10)]["syncs_per_step"] <= 0.3, counts[(50, 10)]
    assert counts[(50, 1)]["syncs_per_step"] > 0  # the numbers do reach the host


def test_aten_ops_per_step_do_not_grow_with_the_history(counts):
    ops_5, ops_50 = counts[(5, 1)]["ops_per_step"], counts[(50, 1)]["ops_per_step"]
    assert ops_50 <= 1.1 * ops_5, (ops_5, ops_50)
