"""Farthest-point sampling, the one loop behind every "k spread-out views" choice (studio cameras, a clip's
head rotations, a photo set's yaw and pitch): each caller supplies its own distance, so each keeps its metric."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def farthest_point_order(n: int, k: int, first: int, distance_to: Callable[[int], np.ndarray]) -> list[int]:
    """min(k, n) of n points in the order chosen: `first`, then repeatedly the point farthest from all chosen
    ones (`distance_to(i)`: the n distances to point i). Ties go to the lowest index and a chosen point is never
    chosen again, so duplicates (a clip that never turns) still give distinct, time-ordered picks."""
    chosen = [first]
    best = np.array(distance_to(first), dtype=np.float64)
    while len(chosen) < min(k, n):
        best[chosen] = -np.inf
        nxt = int(np.argmax(best))
        chosen.append(nxt)
        best = np.minimum(best, distance_to(nxt))
    return chosen
