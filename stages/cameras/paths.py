"""Camera placement helpers: look-at, orbits, turntables and capture-studio domes (all OpenGL c2w)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stages.cameras.camera import Cameras


def look_at(eye: Tensor, target: Tensor | None = None, up: Tensor | None = None) -> Tensor:
    """Camera-to-world (…, 4, 4), OpenGL axes, for cameras at `eye` looking at `target` with +y roughly up."""
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target, dtype=eye.dtype).expand_as(eye)
    up = torch.tensor([0.0, 1.0, 0.0]) if up is None else torch.as_tensor(up, dtype=eye.dtype)
    up = up.to(eye).expand_as(eye)
    back = eye - target
    back = back / back.norm(dim=-1, keepdim=True)
    right = torch.cross(up, back, dim=-1)
    # Degenerate when looking straight along `up`: fall back to +z as the up hint.
    bad = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.cross(torch.tensor([0.0, 0.0, 1.0]).to(eye).expand_as(eye), back, dim=-1)
    right = torch.where(bad, alt, right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.cross(back, right, dim=-1)
    c2w = torch.zeros(*eye.shape[:-1], 4, 4, dtype=eye.dtype)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, true_up, back, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def spherical_eye(azimuth_deg: Tensor, elevation_deg: Tensor, radius: float | Tensor) -> Tensor:
    """Points on a sphere: azimuth 0 is in front of the face (+z), positive azimuth toward the subject's left
    (+x); elevation is positive upward."""
    az, el = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32)), torch.deg2rad(
        torch.as_tensor(elevation_deg, dtype=torch.float32))
    az, el = torch.broadcast_tensors(az, el)
    r = torch.as_tensor(radius, dtype=torch.float32)
    return torch.stack([r * torch.cos(el) * torch.sin(az), r * torch.sin(el), r * torch.cos(el) * torch.cos(az)], -1)


def focal_for_extent(extent: float, distance: float, pixels: int) -> float:
    """Focal length (pixels) at which an object `extent` wide at `distance` spans `pixels`."""
    return pixels * distance / extent


def make_cameras(c2w: Tensor, focal: float, size: int) -> Cameras:
    """Square pinhole cameras with the principal point at the image centre."""
    n = c2w.shape[0]
    f = torch.full((n,), float(focal))
    c = torch.full((n,), size / 2.0)
    return Cameras(c2w, f, f.clone(), c, c.clone(), size, size)


def orbit(n: int, radius: float = 1.0, elevation_deg: float = 5.0, focal: float = 700.0, size: int = 256,
          sweep_deg: float = 360.0, start_deg: float = 0.0, target: Tensor | None = None) -> Cameras:
    """A horizontal orbit of n cameras; sweep_deg < 360 gives a swing (there and back is the caller's choice)."""
    if sweep_deg >= 360.0:
        az = torch.arange(n, dtype=torch.float32) * (360.0 / n) + start_deg
    else:
        az = torch.linspace(start_deg - sweep_deg / 2, start_deg + sweep_deg / 2, n)
    eye = spherical_eye(az, torch.full_like(az, elevation_deg), radius)
    return make_cameras(look_at(eye, target), focal, size)


def swing(n: int, radius: float = 1.0, amplitude_deg: float = 35.0, elevation_deg: float = 5.0,
          focal: float = 700.0, size: int = 256) -> Cameras:
    """A smooth side-to-side swing in front of the face (a sine in azimuth), the default `animate` orbit."""
    t = torch.arange(n, dtype=torch.float32) / max(n, 1)
    az = amplitude_deg * torch.sin(2 * math.pi * t)
    el = elevation_deg + 0.3 * amplitude_deg * torch.sin(4 * math.pi * t) * 0.3
    return make_cameras(look_at(spherical_eye(az, el, radius)), focal, size)


def front(n: int = 1, radius: float = 1.0, focal: float = 700.0, size: int = 256) -> Cameras:
    """n copies of a camera straight in front of the face."""
    eye = spherical_eye(torch.zeros(n), torch.zeros(n), radius)
    return make_cameras(look_at(eye), focal, size)


def dome(n: int, radius: float = 1.0, azimuth_span_deg: float = 200.0, elevation_range_deg: tuple[float, float] = (
        -25.0, 45.0), focal: float = 700.0, size: int = 256, jitter: float = 0.0,
         generator: torch.Generator | None = None) -> Cameras:
    """A capture-studio dome: n cameras spread evenly (a Fibonacci lattice) over the frontal part of a sphere
    spanning `azimuth_span_deg` of azimuth and the given elevation band, all looking at the origin."""
    k = torch.arange(n, dtype=torch.float32) + 0.5
    golden = (1 + 5**0.5) / 2
    u = (k / golden) % 1.0  # azimuth fraction
    v = k / n  # elevation fraction (uniform in sin(elevation) for area uniformity)
    lo, hi = (math.sin(math.radians(e)) for e in elevation_range_deg)
    el = torch.rad2deg(torch.asin(lo + (hi - lo) * v))
    az = (u - 0.5) * azimuth_span_deg
    if jitter > 0:
        az = az + jitter * (torch.rand(n, generator=generator) - 0.5)
        el = el + jitter * (torch.rand(n, generator=generator) - 0.5)
    return make_cameras(look_at(spherical_eye(az, el, radius)), focal, size)
