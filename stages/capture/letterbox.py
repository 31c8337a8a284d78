"""Letterbox bars: black bands a video or an export adds at a frame's edges, which are not part of the scene.

A person segmenter (or a user's mask) that touches such a band takes it in, and the avatar then carries a black
slab that stays rigid with the head and smears across every new view. The band is recognised by what no
photographed surface does: every pixel of a whole row (or column) at the frame's edge is black to within a few
levels, and the picture starts right beside it. Those rows and columns are treated like the padding a crop adds
outside the photo.
"""

from __future__ import annotations

import numpy as np

BLACK = 24 / 255  # brightest level a bar pixel may have (video black is 16 of 255 in limited range)
SPREAD = 12 / 255  # largest spread of levels within one bar row or column (compression noise)
MIN_BAR = 2  # thinner bands are ignored: one dark row is as likely an edge of the picture itself
EDGE = 2  # lines of ringing at a bar's edge counted into the bar
PICTURE_BESIDE = 0.5  # share of the first line past a bar that must be brighter than BLACK


def _bar_depth(lines: np.ndarray) -> int:
    """How many of `lines` (N, L) from the first on are bar lines: all dark and nearly uniform, and ending at
    a line that is mostly picture (a head rendered on black has black rows above it, but no picture beside
    them: that is background, which a mask handles, not a bar)."""
    dark = (lines.max(axis=1) <= BLACK) & (np.ptp(lines, axis=1) <= SPREAD)
    depth = int(np.argmin(dark)) if not dark.all() else len(dark)
    for _ in range(EDGE):  # the codec's ringing at the bar's edge: nearly black, a little less uniform
        if MIN_BAR <= depth < len(lines) and lines[depth].max() <= 2 * BLACK:
            depth += 1
    if depth < MIN_BAR or depth >= len(lines) or np.mean(lines[depth] > BLACK) < PICTURE_BESIDE:
        return 0
    return depth


def letterbox(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """Bar thickness in pixels at the (top, bottom, left, right) of an (H, W, 3) float image in [0, 1].

    A frame that is black all over has no picture to bound, so nothing of it is called a bar."""
    grey = rgb[..., :3].max(axis=2)
    h, w = grey.shape
    top, bottom = _bar_depth(grey), _bar_depth(grey[::-1])
    left, right = _bar_depth(grey.T), _bar_depth(grey.T[::-1])
    if top + bottom >= h or left + right >= w:
        return 0, 0, 0, 0
    return top, bottom, left, right


def picture_area(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32: 0 on the letterbox bars of `rgb`, 1 on the picture."""
    top, bottom, left, right = letterbox(rgb)
    area = np.ones(rgb.shape[:2], np.float32)
    h, w = area.shape
    area[:top], area[h - bottom:], area[:, :left], area[:, w - right:] = 0, 0, 0, 0
    return area
