"""The schedule from plain numbers (model/schedule.py): the model computes it without seeing the config, and the
config's scale_sizes/steps_per_scale (test_config.py) are these functions called with its values."""

import pytest

from nst.model.schedule import Schedule, scale_sizes, steps_per_scale


def test_sizes_run_smallest_first_and_end_at_the_size():
    assert scale_sizes(512, 128, 2 ** 0.5) == [128, 181, 256, 362, 512]
    assert scale_sizes(384, 192, 2.0) == [192, 384]
    assert scale_sizes(128, 192, 2.0) == [128]  # size <= smallest: one scale
    assert scale_sizes(512, 0, 2.0) == [512]  # smallest 0: one scale


def test_coarse_steps_are_capped_at_60_percent_and_too_few_is_a_value_error():
    assert steps_per_scale(2, 150, 60) == [60, 90]
    assert steps_per_scale(5, 100, 50) == [15, 15, 15, 15, 40]
    assert steps_per_scale(1, 7, 60) == [7]
    with pytest.raises(ValueError, match="3 steps are too few for 5 scales"):
        steps_per_scale(5, 3, 50)


def test_a_step_belongs_to_the_scale_whose_steps_it_falls_in():
    s = Schedule(sizes=[192, 384], steps=[2, 3])
    assert [s.scale_at(i) for i in range(7)] == [0, 0, 1, 1, 1, 1, 1]  # past the end: the last scale
