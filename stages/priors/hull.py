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
from stages.priors.geometry import sphere_interval, to_camera, to_grid, to_pixels


@dataclass
class HullIntervals:
    """Per-pixel hull entry and exit distances along each view's rays."""

    t_in: Tensor  # (V, H, W) distance from the camera centre where the ray enters the hull
    t_out: Tensor  # (V, H, W) where it leaves the hull again (end of the first inside run)
    valid: Tensor  # (V, H, W) bool: foreground pixels whose ray meets the (possibly relaxed) hull


@dataclass
class _Rays:
    """Rays expressed in every camera's frame: the point at distance t along ray p has camera-v coordinates
    A[v, p] + t * B[v, p] (cheap to evaluate for many t per ray)."""

    cameras: Cameras
    A: Tensor  # (V, P, 3) ray origins in each camera's OpenCV frame
    B: Tensor  # (V, P, 3) ray directions in each camera's OpenCV frame

    @staticmethod
    def of_pixels(cameras: Cameras, select: Tensor | None = None) -> _Rays:
        """The pixel rays of every view (view-major), all of them or those at flat indices `select`."""
        o, d = (x.reshape(-1, 3) for x in cameras.rays())
        if select is not None:
            o, d = o[select], d[select]
        return _Rays(cameras, to_camera(cameras, o, shared=True), to_camera(cameras, d, point=False, shared=True))

    def part(self, start: int, stop: int) -> _Rays:
        return _Rays(self.cameras, self.A[:, start:stop], self.B[:, start:stop])

    def outside_votes(self, t: Tensor, masks: Tensor, level: float) -> Tensor:
        """For distances t (P, S) or (P,) along the rays, how many views see the points on background.

        Masks are read bilinearly and cut at `level`, which puts the silhouette between pixels (a hull from
        pixelated masks is terraced) and, below 0.5, grows it slightly so mask noise does not carve the
        head. Beyond the image border a mask continues as its border pixels: a neck that runs off the bottom
        of a crop goes on below it, while empty space beside a tightly cropped head stays empty."""
        squeeze = t.dim() == 1
        t = t[:, None] if squeeze else t
        V, H, W = masks.shape
        x, y, z = (self.A[..., i, None] + t[None] * self.B[..., i, None] for i in range(3))  # (V, P, S)
        uv = to_pixels(self.cameras, x, y, z)
        grid = to_grid(uv, W, H).reshape(V, 1, -1, 2)
        m = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
        votes = ((m.reshape(z.shape) < level) & (z > 0)).sum(0)
        return votes[:, 0] if squeeze else votes


def carve(cameras: Cameras, masks: Tensor, centre: Tensor, radius: Tensor | float, samples: int = 96,
          level: float = 0.4, bisect: int = 6, chunk: int | None = None) -> HullIntervals:
    """Intersect every foreground pixel's ray with the visual hull of `masks` (V, H, W) in [0, 1].

    The ray is sampled at `samples` points across the bounding sphere, then the entry point is refined by
    `bisect` halvings. Masks are cut at `level` (see `_Rays.outside_votes`). On a GPU every pixel is
    computed (no data-dependent shapes, so no synchronisation), on a CPU only the foreground ones."""
    V, H, W = masks.shape
    dev = masks.device
    fg = (masks > 0.5).reshape(-1)
    select = fg.nonzero()[:, 0] if dev.type == "cpu" else None
    rays = _Rays.of_pixels(cameras, select)
    o, d = cameras.rays()
    t0, t1 = (x.reshape(-1) for x in sphere_interval(o, d, centre.to(o), radius))
    if select is not None:
        t0, t1, fg = t0[select], t1[select], fg[select]
    frac = (torch.arange(samples, device=dev, dtype=o.dtype) + 0.5) / samples
    ts = t0[:, None] + (t1 - t0)[:, None] * frac[None]  # (P, S)
    chunk = chunk or (1 << 25 if dev.type == "cuda" else 1 << 22)  # elements per intermediate tensor
    rows = max(1, chunk // (samples * V))
    votes = torch.cat([rays.part(s, s + rows).outside_votes(ts[s:s + rows], masks, level)
                       for s in range(0, ts.shape[0], rows)])
    strict = votes == 0
    relaxed = votes <= (1 if V >= 3 else 0)
    use_strict = strict.any(1)
    inside = torch.where(use_strict[:, None], strict, relaxed)
    hit = inside.any(1) & fg
    ar = torch.arange(samples, device=dev)
    first = torch.where(inside, ar, samples).amin(1).clamp(max=samples - 1)
    # end of the first inside run: the first outside sample after `first`
    after = (~inside) & (ar[None] > first[:, None])
    last = torch.where(after, ar, samples).amin(1) - 1
    step = (t1 - t0) / samples
    t_out = ts.gather(1, last.clamp(min=0)[:, None])[:, 0] + 0.5 * step
    # bisection between the last outside sample and the first inside one
    allowed = torch.where(use_strict, 0, 1 if V >= 3 else 0)
    hi = ts.gather(1, first[:, None])[:, 0]
    lo = torch.where(first > 0, hi - step, t0)
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        ok = rays.outside_votes(mid, masks, level) <= allowed
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    zero = torch.zeros_like(hi)
    t_in, t_exit = torch.where(hit, hi, zero), torch.where(hit, torch.maximum(t_out, hi), zero)
    if select is not None:
        t_in, t_exit, hit = (_scatter(x, select, V * H * W) for x in (t_in, t_exit, hit))
    return HullIntervals(t_in.reshape(V, H, W), t_exit.reshape(V, H, W), hit.reshape(V, H, W))


def _scatter(values: Tensor, index: Tensor, size: int) -> Tensor:
    out = torch.zeros(size, dtype=values.dtype, device=values.device)
    out[index] = values
    return out


def refine_entry(cameras: Cameras, masks: Tensor, t_guess: Tensor, valid: Tensor, delta: Tensor | float,
                 level: float = 0.4, bisect: int = 6) -> Tensor:
    """Sharpen hull entry distances `t_guess` (V, H, W), e.g. upsampled from a coarser carve, against masks
    at the guess's own resolution: bisect in [t - delta, t + delta] wherever that bracket straddles the hull
    boundary (outside at its near end, inside at its far end); elsewhere the guess is kept."""
    V = masks.shape[0]
    select = valid.reshape(-1).nonzero()[:, 0] if masks.device.type == "cpu" else None
    rays = _Rays.of_pixels(cameras, select)
    t_all = t_guess.reshape(-1)
    t_p = t_all if select is None else t_all[select]
    keep = valid.reshape(-1) if select is None else torch.ones_like(t_p, dtype=torch.bool)
    if torch.is_tensor(delta) and delta.dim() > 0:
        delta = delta.reshape(-1) if select is None else delta.reshape(-1)[select]
    allowed = 1 if V >= 3 else 0
    lo, hi = t_p - delta, t_p + delta
    out_lo, out_hi = rays.outside_votes(lo, masks, level), rays.outside_votes(hi, masks, level)
    strict = (out_lo > 0) & (out_hi == 0)
    straddle = (strict | ((out_lo > allowed) & (out_hi <= allowed))) & keep
    limit = torch.where(strict, 0, allowed)
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        ok = rays.outside_votes(mid, masks, level) <= limit
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    refined = torch.where(straddle, hi, t_p)
    if select is not None:
        refined = t_all.clone().index_copy_(0, select, refined)
    return refined.reshape(t_guess.shape)
