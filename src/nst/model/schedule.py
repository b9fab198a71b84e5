"""The schedule, coarse to fine: the longest side of each scale and the steps at each, from plain numbers.

config.py calls these with the config's values (data.size, scales.*, trainer.max_steps); the model never sees
the config.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Schedule:
    sizes: list[int]  # longest side per scale, smallest first
    steps: list[int]  # steps per scale

    def scale_at(self, step: int) -> int:
        total = 0
        for i, n in enumerate(self.steps):
            total += n
            if step < total:
                return i
        return len(self.steps) - 1


def scale_sizes(size: int, smallest: int, factor: float) -> list[int]:
    """Longest sides of the scales, smallest first, ending at `size`; `smallest` 0 (or >= size): one scale."""
    if not smallest or smallest >= size:
        return [size]
    sizes = [size]
    while sizes[-1] / factor >= smallest - 0.5:
        sizes.append(round(sizes[-1] / factor))
    return sizes[::-1]


def steps_per_scale(scales: int, total: int, coarse: int) -> list[int]:
    """`coarse` steps at each scale below the last, but at most 60% of `total` in all, so that more scales or fewer
    steps still leave most of the work to the full-size image. ValueError when `total` is too few for `scales`."""
    n_coarse = scales - 1
    if n_coarse == 0:
        return [total]
    each = min(coarse, int(0.6 * total) // n_coarse)
    if each < 1:
        raise ValueError(f"{total} steps are too few for {scales} scales")
    return [each] * n_coarse + [total - each * n_coarse]
