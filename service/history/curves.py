"""Down-sampling of learning curves for plotting.

Method (min-max decimation): a curve of ``n > max_points`` points keeps its first and last point;
the points in between are cut into ``(max_points - 2) // 2`` buckets of consecutive steps, and
each bucket keeps its smallest and its largest value (one point if they are the same). So the
result has at most ``max_points`` points, always includes the curve's global minimum and maximum,
and keeps every spike visible at any zoom level that shows the whole curve. NaN is never an
extreme; a bucket of NaN only keeps its first point. Infinities count as extremes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_POINTS = 4


def downsample(
    steps: Sequence[int], values: Sequence[float], max_points: int
) -> tuple[list[int], list[float]]:
    """``(steps, values)`` reduced to at most ``max_points`` points (see the module docstring)."""
    if max_points < MIN_POINTS:
        raise ValueError(f"max_points must be at least {MIN_POINTS}")
    n = len(steps)
    if n <= max_points:
        return list(steps), list(values)
    keep = {0, n - 1}
    interior = n - 2
    buckets = (max_points - 2) // 2
    for b in range(buckets):
        lo = 1 + b * interior // buckets
        hi = 1 + (b + 1) * interior // buckets
        keep.update(_extremes(values, lo, hi))
    chosen = sorted(keep)
    return [steps[i] for i in chosen], [values[i] for i in chosen]


def _extremes(values: Sequence[float], lo: int, hi: int) -> set[int]:
    """Indices of the smallest and largest non-NaN value in ``values[lo:hi]``."""
    lowest = highest = -1
    for i in range(lo, hi):
        value = values[i]
        if math.isnan(value):
            continue
        if lowest < 0 or value < values[lowest]:
            lowest = i
        if highest < 0 or value > values[highest]:
            highest = i
    if lowest < 0:
        return {lo} if lo < hi else set()
    return {lowest, highest}
