"""Hole filling by push-pull: a weighted image pyramid is built down to one pixel, then coarser levels fill
the pixels finer ones know nothing about. Smooth, complete and linear in the number of pixels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def push_pull(values: Tensor, weights: Tensor) -> Tensor:
    """Fill (B, C, H, W) `values` where `weights` (B, 1, H, W) in [0, 1] are low, from their neighbourhood.

    Pixels of weight 1 keep their value; weight-0 pixels take a smooth interpolation of their surroundings."""
    if min(values.shape[-2:]) <= 1:
        return values
    wv = values * weights
    small_w = F.avg_pool2d(weights, 2, ceil_mode=True)
    small_wv = F.avg_pool2d(wv, 2, ceil_mode=True)
    small_v = small_wv / small_w.clamp(min=1e-8)
    coarse = push_pull(small_v, (4.0 * small_w).clamp(max=1.0))
    up = F.interpolate(coarse, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return weights * values + (1.0 - weights) * up
