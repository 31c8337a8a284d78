"""Visual hull along camera rays: for every foreground pixel, where its ray enters and leaves the region
whose projections fall inside every view's mask.

The hull is complete (every foreground pixel gets an interval) and always contains the true surface, so it
bounds the stereo search and stands in for depth where matching finds nothing. Beyond its image, a view's
mask is extended by its border pixels (necks run off the bottom of crops; the space beside a head does not).
Masks show different expressions, so a pixel whose ray misses the strict hull falls back to the hull carved
with one view's vote left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.geometry import project, sphere_interval, to_grid


@dataclass
class HullIntervals:
    """Per-pixel hull entry and exit distances along each view's rays."""

    t_in: Tensor  # (V, H, W) distance from the camera centre where the ray enters the hull
    t_out: Tensor  # (V, H, W) where it leaves the hull again (end of the first inside run)
    valid: Tensor  # (V, H, W) bool: foreground pixels whose ray meets the (possibly relaxed) hull


def _outside_votes(points: Tensor, cameras: Cameras, masks: Tensor, level: float) -> Tensor:
    """For points (P, 3), how many views see them on background: (P,) int.

    Masks are read bilinearly and cut at `level`, which puts the silhouette between pixels (a hull from
    pixelated masks is terraced) and, below 0.5, grows it slightly so mask noise does not carve the head.
    Beyond the image border a mask continues as its border pixels: a neck that runs off the bottom of a crop
    goes on below it, while empty space beside a tightly cropped head stays empty."""
    V, H, W = masks.shape
    uv, z = project(cameras, points)  # (V, P, 2), (V, P)
    grid = to_grid(uv, W, H)[:, None]  # (V, 1, P, 2)
    m = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return ((m[:, 0, 0] < level) & (z > 0)).sum(0)


def carve(cameras: Cameras, masks: Tensor, centre: Tensor, radius: float, samples: int = 96,
          level: float = 0.3, bisect: int = 6, chunk: int = 1 << 21) -> HullIntervals:
    """Intersect every foreground pixel's ray with the visual hull of `masks` (V, H, W) in [0, 1].

    The ray is sampled at `samples` points across the bounding sphere, then the entry point is refined by
    `bisect` halvings. Masks are cut at `level` (see `_outside_votes`)."""
    V, H, W = masks.shape
    dev = masks.device
    fg = masks > 0.5
    o, d = cameras.rays()
    t0, t1 = sphere_interval(o, d, centre.to(o), radius)
    idx = fg.reshape(-1).nonzero()[:, 0]
    o_p, d_p = o.reshape(-1, 3)[idx], d.reshape(-1, 3)[idx]
    t0_p, t1_p = t0.reshape(-1)[idx], t1.reshape(-1)[idx]
    frac = (torch.arange(samples, device=dev, dtype=o.dtype) + 0.5) / samples
    ts = t0_p[:, None] + (t1_p - t0_p)[:, None] * frac[None]  # (P, S)
    votes = torch.empty(ts.shape, dtype=torch.long, device=dev)
    rows = max(1, chunk // (samples * V))
    for s in range(0, len(idx), rows):
        pts = o_p[s:s + rows, None] + ts[s:s + rows, :, None] * d_p[s:s + rows, None]
        votes[s:s + rows] = _outside_votes(pts.reshape(-1, 3), cameras, masks, level).reshape(-1, samples)
    strict = votes == 0
    relaxed = votes <= (1 if V >= 3 else 0)
    use_strict = strict.any(1)
    inside = torch.where(use_strict[:, None], strict, relaxed)
    hit = inside.any(1)
    ar = torch.arange(samples, device=dev)
    first = torch.where(inside, ar, samples).amin(1).clamp(max=samples - 1)
    # end of the first inside run: the first outside sample after `first`
    after = (~inside) & (ar[None] > first[:, None])
    last = torch.where(after, ar, samples).amin(1) - 1
    step = (t1_p - t0_p) / samples
    t_out = ts.gather(1, last.clamp(min=0)[:, None])[:, 0] + 0.5 * step
    # bisection between the last outside sample and the first inside one
    allowed = torch.where(use_strict, 0, 1 if V >= 3 else 0)
    hi = ts.gather(1, first[:, None])[:, 0]
    lo = torch.where(first > 0, hi - step, t0_p)
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        v = _outside_votes(o_p + mid[:, None] * d_p, cameras, masks, level)
        ok = v <= allowed
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    out_in = torch.zeros(V * H * W, dtype=o.dtype, device=dev)
    out_out = torch.zeros_like(out_in)
    out_valid = torch.zeros(V * H * W, dtype=torch.bool, device=dev)
    out_in[idx] = torch.where(hit, hi, 0.0)
    out_out[idx] = torch.where(hit, torch.maximum(t_out, hi), 0.0)
    out_valid[idx] = hit
    return HullIntervals(out_in.reshape(V, H, W), out_out.reshape(V, H, W), out_valid.reshape(V, H, W))


def refine_entry(cameras: Cameras, masks: Tensor, t_guess: Tensor, valid: Tensor, delta: Tensor | float,
                 level: float = 0.4, bisect: int = 8) -> Tensor:
    """Sharpen hull entry distances `t_guess` (V, H, W), e.g. upsampled from a coarser carve, against masks
    at the guess's own resolution: bisect in [t - delta, t + delta] wherever that bracket straddles the hull
    boundary (outside at its near end, inside at its far end); elsewhere the guess is kept."""
    V = masks.shape[0]
    idx = valid.reshape(-1).nonzero()[:, 0]
    o, d = cameras.rays()
    o_p, d_p = o.reshape(-1, 3)[idx], d.reshape(-1, 3)[idx]
    t_p = t_guess.reshape(-1)[idx]
    dl = delta.reshape(-1)[idx] if torch.is_tensor(delta) else torch.full_like(t_p, float(delta))
    allowed = 1 if V >= 3 else 0
    lo, hi = t_p - dl, t_p + dl
    out_lo = _outside_votes(o_p + lo[:, None] * d_p, cameras, masks, level)
    out_hi = _outside_votes(o_p + hi[:, None] * d_p, cameras, masks, level)
    strict = (out_lo > 0) & (out_hi == 0)
    straddle = strict | ((out_lo > allowed) & (out_hi <= allowed))
    limit = torch.where(strict, 0, allowed)
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        ok = _outside_votes(o_p + mid[:, None] * d_p, cameras, masks, level) <= limit
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    out = t_guess.clone().reshape(-1)
    out[idx] = torch.where(straddle, hi, t_p)
    return out.reshape(t_guess.shape)
