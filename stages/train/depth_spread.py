"""Depth spread: how far apart, along each pixel's ray, the Gaussians that a pixel blends lie.

On real captures the network answers geometry it cannot trust with many faint, wide Gaussians from the four
views at disagreeing depths (benchmarks/fog.py measures it); every pixel then blends surfaces centimetres
apart, which is the blur. The alpha-weighted standard deviation of the blended Gaussians' distances to the
camera is zero for one surface and grows with the fog, so it can be penalised in training (`train
--depth-spread-weight`), as the distortion loss of Mip-NeRF 360 penalises spread-out ray weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.gaussians import Gaussians
from stages.render import render

MIN_ALPHA = 1e-3  # below this a pixel blends nothing worth a spread


def depth_spread(gaussians: Gaussians, camera: Cameras) -> tuple[Tensor, Tensor]:
    """(H, W) standard deviation in metres of the distances to `camera` (one camera) of the Gaussians each pixel
    blends, weighted as the colours are, and the pixel's alpha. Differentiable. One render: the distance d and
    d² are rendered as colours over black, so E[d] and E[d²] come out of the blend itself."""
    d = (gaussians.means - camera.centers()[0].to(gaussians.means)).norm(dim=-1)
    d = d - d.detach().median()  # centred: E[d²] − E[d]² of values near 0 keeps float32 precision
    probe = Gaussians(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits,
                      torch.stack([d + 1.0, d * d, torch.zeros_like(d)], dim=-1))  # +1: colours clamp at 0
    out = render(probe, camera, background=(0.0, 0.0, 0.0), depth=False)
    alpha = out.alpha[0, ..., 0]
    a = alpha.clamp_min(MIN_ALPHA)
    mean = out.rgb[0, ..., 0] / a - 1.0
    var = (out.rgb[0, ..., 1] / a - mean * mean).clamp_min(0.0)
    return torch.where(alpha > MIN_ALPHA, (var + 1e-12).sqrt(), torch.zeros_like(var)), alpha
