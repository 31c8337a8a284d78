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
from stages.priors.geometry import inside_image, to_camera, to_grid, to_pixels

NCC_EPS = 1e-4  # variance floor: windows flatter than about 1% grey are treated as carrying no signal


def box_sum(x: Tensor, k: int) -> Tensor:
    """Sum over k×k windows of (B, C, H, W) (zeros beyond the edges) from running sums: the cost does not
    grow with k, which matters for the wide aggregation windows. Meant for ratios of two such sums; float32
    running sums lose precision on long rows, so windowed variances use `box_filter`."""
    r = k // 2
    c = F.pad(x, (r + 1, r)).cumsum(-1)
    x = c[..., k:] - c[..., :-k]
    c = F.pad(x, (0, 0, r + 1, r)).cumsum(-2)
    return c[..., k:, :] - c[..., :-k, :]


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


def sweep_cost(gray: Tensor, cameras: Cameras, t: Tensor, window: int, top_k: int, aggregate: int = 1,
               weights: Tensor | None = None, budget: int | None = None) -> CostVolume:
    """Cost of the hypotheses t (V, D, H, W), distances along the pixel rays of `cameras` (at H x W).

    `gray` (V, 1, H, W) are the views at that resolution (source views are sampled from them too).
    `aggregate` > 1 averages the cost over that window (weighted by `weights` (V, H, W), the foreground),
    which is what lets nearly textureless skin match: it assumes the true surface lies at the same hypothesis
    index across the window, i.e. parallel to the surface the hypotheses follow. Reference/source pairs are
    batched, `budget` elements per intermediate tensor at most (more on CUDA)."""
    V, D, H, W = t.shape
    dev = gray.device
    k = max(1, min(top_k, V - 1))
    budget = budget or (1 << 26 if dev.type == "cuda" else 1 << 24)
    group = max(1, min(V - 1, budget // (V * D * H * W)))
    ref_stats = _window_stats(gray, window)
    _, dirs = cameras.rays()
    centres = cameras.centers()
    best: list[Tensor] = []  # the k lowest costs so far, in increasing order (a streaming insertion sort)
    for first in range(1, V, group):  # sources = reference + shift (mod V), `group` shifts at a time
        n = min(group, V - first)
        ref = torch.arange(V, device=dev).repeat(n)
        src = (ref + torch.arange(first, first + n, device=dev).repeat_interleave(V)) % V
        cams = cameras[src]
        # camera-frame coordinates of the hypotheses: A + t * B, with the ray in the source's frame
        A = to_camera(cams, centres[ref])[:, None, None, None]  # (P, 1, 1, 1, 3)
        B = to_camera(cams, dirs[ref], point=False)[:, None]  # (P, 1, H, W, 3)
        tt = t[ref]
        x, y, z = (A[..., i] + tt * B[..., i] for i in range(3))  # (P, D, H, W)
        uv = to_pixels(cams, x, y, z)
        # the window must land on the source image: its centre, with a margin of the window's radius
        m = float(window // 2)
        valid = (z > 1e-6) & inside_image(uv - m, cameras.width - 2 * m, cameras.height - 2 * m)
        grid = to_grid(uv, cameras.width, cameras.height).reshape(len(ref), D * H, W, 2)
        warped = F.grid_sample(gray[src], grid, mode="bilinear", padding_mode="border", align_corners=False)
        ncc = _ncc(gray[ref], (ref_stats[0][ref], ref_stats[1][ref]), warped.reshape(-1, D, H, W), window)
        cost = torch.where(valid, 1.0 - ncc, torch.full_like(ncc, 2.0))
        for c in cost.reshape(n, V, D, H, W).unbind(0):
            for i in range(len(best)):
                best[i], c = torch.minimum(best[i], c), torch.maximum(best[i], c)
            if len(best) < k:
                best.append(c)
    cost = best[0] if k == 1 else torch.stack(best).mean(0)
    if aggregate > 1:
        w = torch.ones_like(cost[:, :1]) if weights is None else weights[:, None].to(cost)
        cost = box_sum(cost * w, aggregate) / box_sum(w, aggregate).clamp(min=1e-6)
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
