"""Per-view windows of feature maps: the network decodes a window around each view's kept pixels instead of the
whole image (stages.model.kept chooses them; Avat3rNet's per-frame path crops its maps with them)."""

from __future__ import annotations

import torch
from torch import Tensor


def crop(x: Tensor, window: tuple, scale: int) -> Tensor:
    """(V, C, H, W) → (V, C, h, w): each view's window, in units of `scale` pixels."""
    tops, lefts, ht, wt = window
    return torch.stack([x[v, :, t * scale:(t + ht) * scale, left * scale:(left + wt) * scale]
                        for v, (t, left) in enumerate(zip(tops, lefts, strict=True))])
