"""Masks drawn from 2D landmarks: the convex hull of a set of points, filled. Shared by evaluation (the face
region the face PSNR is measured on) and training (the mouth and eye regions of video frames), which must draw
their hulls the same way; numpy and OpenCV only, so either package may import it."""

from __future__ import annotations

import numpy as np


def hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(height, width) uint8 mask, 1 inside the convex hull of `points` (N, >= 2), given in pixel-corner
    coordinates (a point at (0.5, 0.5) is the centre of the first pixel)."""
    import cv2

    hull = cv2.convexHull(np.round(np.asarray(points, np.float64)[:, :2] - 0.5).astype(np.int32))
    mask = np.zeros(tuple(shape), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask
