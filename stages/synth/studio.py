"""Capture-studio cameras for the synthetic heads, and choosing well-spread input views among them."""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras, dome, focal_for_extent, look_at, make_cameras, spherical_eye

HEAD_EXTENT = 0.34  # metres the studio cameras frame: head, hair volume and some neck
JITTER_DEG = 4.0


def studio_cameras(n: int, size: int, seed: int | None = None, radius: float = 1.0) -> Cameras:
    """A dome of n cameras over the frontal ~200° of azimuth and -25..+45° of elevation, all looking at the
    head centre, with a focal length at which HEAD_EXTENT fills the frame. A seed adds a small per-camera jitter
    (a few degrees), None gives the exact lattice."""
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    return dome(n, radius=radius, azimuth_span_deg=200.0, elevation_range_deg=(-25.0, 45.0),
                focal=focal_for_extent(HEAD_EXTENT, radius, size), size=size,
                jitter=JITTER_DEG if seed is not None else 0.0, generator=g)


def capture_cameras(n: int, size: int, generator: torch.Generator, radius: float = 1.0,
                    spread_deg: float = 55.0) -> Cameras:
    """n input cameras spread across the front (azimuths from -spread to +spread, jittered), slightly varied
    in elevation: the kind of views a person takes with a phone around a face."""
    if n == 1:
        az = torch.zeros(1)
    else:
        az = torch.linspace(-spread_deg, spread_deg, n)
        az = az + (torch.rand(n, generator=generator) - 0.5) * (2 * spread_deg / (n - 1)) * 0.35
    el = -8.0 + 26.0 * torch.rand(n, generator=generator)
    eye = spherical_eye(az, el, radius)
    return make_cameras(look_at(eye), focal_for_extent(HEAD_EXTENT, radius, size), size)


def farthest_views(directions: Tensor, k: int, generator: torch.Generator) -> list[int]:
    """k-farthest viewpoint sampling: a random first view, then repeatedly the view whose direction is
    farthest (in angle) from all chosen ones."""
    from stages.farthest import farthest_point_order

    d = directions / directions.norm(dim=-1, keepdim=True)
    n = d.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    return farthest_point_order(n, k, first, lambda i: (d @ d[i]).clamp(-1, 1).acos().cpu().numpy())
