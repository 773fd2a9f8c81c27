"""Pareto fronts of complete trials, fast enough for overview pages of large studies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def pareto_front_mask(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each point, whether no other point dominates it (at least as good in every objective
    and better in one). Equal points do not dominate each other. NaN must not occur."""
    if not values:
        return []
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    points = np.asarray(values, dtype=float) * signs  # every objective minimised
    order = np.lexsort(points.T[::-1])  # by objective 0, then 1, ...
    ordered = points[order]
    on_front = _two_objectives(ordered) if ordered.shape[1] == 2 else _any_objectives(ordered)
    mask = np.empty(len(points), dtype=bool)
    mask[order] = on_front
    return [bool(m) for m in mask]


def _two_objectives(points: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """O(n log n): sorted by (a, b), a point is dominated by an earlier group (smaller a) whose
    running minimum of b is <= its b, or within its own group (same a) by a smaller b."""
    a, b = points[:, 0], points[:, 1]
    group_start = np.searchsorted(a, a, side="left")
    running_min = np.minimum.accumulate(b)
    before = np.where(group_start > 0, running_min[np.maximum(group_start - 1, 0)], np.inf)
    dominated = (before <= b) | (b > b[group_start])
    return ~dominated


def _any_objectives(points: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """O(n * front size): in lexicographic order a point can only be dominated by an earlier
    one, and whatever dominates it is itself dominated by (or is) a member of the front."""
    on_front = np.zeros(len(points), dtype=bool)
    front: list[int] = []
    for i, point in enumerate(points):
        if front:
            members = points[front]
            if np.any(np.all(members <= point, axis=1) & np.any(members < point, axis=1)):
                continue
        front.append(i)
        on_front[i] = True
    return on_front
