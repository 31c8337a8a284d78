"""Multi-view stereo by sweeping depth hypotheses along every pixel's ray, batched over all views.

For each reference view and hypothesis, the other views are sampled where the hypothesised 3D points project,
and compared with the reference by normalised cross-correlation (NCC) over a square window. NCC ignores gain
and offset, so shading that differs between views does not matter; aggregating the best k of the other views
skips views that are occluded or see a changed expression at that spot.

Hypotheses are per pixel (a distance along its ray), not fronto-parallel planes: in the first pass they follow
the visual hull's surface, later they follow the previous estimate, so the window compares points on a surface
shaped like the head rather than on a plane facing the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.geometry import inside_image, project, to_grid

NCC_EPS = 1e-4  # variance floor: windows flatter than about 1% grey are treated as carrying no signal


def box_filter(x: Tensor, k: int) -> Tensor:
    """Mean over k×k windows of (B, C, H, W), separable, edges averaged over the valid part only."""
    if k <= 1:
        return x
    x = F.avg_pool2d(x, (1, k), 1, (0, k // 2), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), 1, (k // 2, 0), count_include_pad=False)


@dataclass
class CostVolume:
    """Matching cost per view, hypothesis and pixel, aggregated over the best source views."""

    cost: Tensor  # (V, D, H, W) 1 - NCC in [0, 2]; 2 where no source view could be compared


def sweep_cost(gray: Tensor, cameras: Cameras, origins: Tensor, dirs: Tensor, t: Tensor, window: int,
               top_k: int, aggregate: int = 1, weights: Tensor | None = None) -> CostVolume:
    """Cost of the hypotheses t (V, D, H, W) along rays (origins, dirs: (V, H, W, 3)).

    `gray` (V, 1, H, W) are the views at the rays' resolution (source views are sampled from them too).
    `aggregate` > 1 averages the cost over that window (weighted by `weights` (V, H, W), the foreground),
    which is what lets nearly textureless skin match: it assumes the true surface lies at the same hypothesis
    index across the window, i.e. parallel to the surface the hypotheses follow."""
    V, D, H, W = t.shape
    pts = (origins[:, None] + t[..., None] * dirs[:, None]).reshape(V, -1, 3)  # (V, D*H*W, 3)
    k = max(1, min(top_k, V - 1))
    best: list[Tensor] = []  # the k lowest costs so far, in increasing order (a streaming insertion sort)
    ref_stats = _window_stats(gray, window)
    for shift in range(1, V):  # source = reference + shift (mod V): V pairs per step, all pairs over the loop
        src = (torch.arange(V, device=gray.device) + shift) % V
        uv, z = project(cameras[src], pts)
        valid = ((z > 1e-6) & inside_image(uv, cameras.width, cameras.height)).reshape(V, D, H, W).float()
        grid = to_grid(uv, cameras.width, cameras.height).reshape(V, D * H, W, 2)
        warped = F.grid_sample(gray[src], grid, mode="bilinear", padding_mode="border", align_corners=False)
        ncc = _ncc(gray, ref_stats, warped.reshape(V, D, H, W), window)
        # a window that reaches outside the source image cannot be compared
        c = torch.where(box_filter(valid, window) > 0.999, 1.0 - ncc, torch.full_like(ncc, 2.0))
        for i in range(len(best)):
            best[i], c = torch.minimum(best[i], c), torch.maximum(best[i], c)
        if len(best) < k:
            best.append(c)
    cost = torch.stack(best).mean(0)
    if aggregate > 1:
        w = torch.ones_like(cost[:, :1]) if weights is None else weights[:, None].to(cost)
        cost = box_filter(cost * w, aggregate) / box_filter(w, aggregate).clamp(min=1e-6)
    return CostVolume(cost)


def _window_stats(image: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Windowed mean and variance of (V, 1, H, W)."""
    mu = box_filter(image, window)
    return mu, (box_filter(image * image, window) - mu * mu).clamp(min=0.0)


def _ncc(reference: Tensor, ref_stats: tuple[Tensor, Tensor], warped: Tensor, window: int) -> Tensor:
    """Windowed NCC between reference (V, 1, H, W) and each hypothesis slice of warped (V, D, H, W)."""
    mu_r, var_r = ref_stats
    mu_w, var_w = _window_stats(warped, window)
    cov = box_filter(warped * reference, window) - mu_w * mu_r
    return (cov / ((var_r + NCC_EPS) * (var_w + NCC_EPS)).sqrt()).clamp(-1.0, 1.0)


@dataclass
class DepthEstimate:
    """Winner-take-all depth along the rays with its sharpness and best matching score."""

    t: Tensor  # (V, H, W) refined distance along the ray
    margin: Tensor  # (V, H, W) how much worse the best hypothesis away from the minimum is (sharpness, >= 0)
    score: Tensor  # (V, H, W) aggregated NCC at the minimum (1 - cost)
    index: Tensor  # (V, H, W) winning hypothesis


def select(cost: Tensor, t: Tensor, exclude: int = 2) -> DepthEstimate:
    """Pick the lowest-cost hypothesis, refine it below the sampling step by fitting a parabola through the
    costs around it, and measure how sharp the minimum is.

    Hypotheses must be evenly spaced per pixel. Sharpness is the margin between the minimum and the lowest
    cost more than `exclude` steps from it: a textureless pixel has a flat cost curve (margin near 0), a
    distinct match a deep, isolated minimum; a repeated pattern has a rival minimum and scores low too."""
    D = cost.shape[1]
    idx = cost.argmin(1, keepdim=True)
    c0 = cost.gather(1, idx)
    cm = cost.gather(1, (idx - 1).clamp(min=0))
    cp = cost.gather(1, (idx + 1).clamp(max=D - 1))
    curv = cm + cp - 2.0 * c0
    offset = torch.where(curv > 1e-6, 0.5 * (cm - cp) / curv.clamp(min=1e-6), torch.zeros_like(c0))
    inner = (idx > 0) & (idx < D - 1)
    offset = torch.where(inner, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
    step = (t[:, 1:2] - t[:, 0:1]) if D > 1 else torch.zeros_like(c0)
    t_best = t.gather(1, idx) + offset * step
    far = (torch.arange(D, device=cost.device)[None, :, None, None] - idx).abs() > exclude
    rival = torch.where(far, cost, torch.full_like(cost, 2.0)).amin(1, keepdim=True)
    return DepthEstimate(t_best[:, 0], (rival - c0)[:, 0].clamp(min=0.0), (1.0 - c0[:, 0]).clamp(-1.0, 1.0),
                         idx[:, 0])
