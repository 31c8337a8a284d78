"""A tiny analytic head-like scene with exact depth, for testing and benchmarking the prior backends without
any renderer: a textured ellipsoid head with a nose, ray-cast from a few cameras spread around the face.

The texture is a solid (3D) texture: low-contrast "skin" noise plus darker blobs for brows, eyes and lips,
with Lambertian shading, so views differ photometrically the way real photos do. `mouth` widens the lips per
view, imitating the inputs' different expressions.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from stages.cameras import Cameras, look_at, make_cameras, spherical_eye
from stages.capture import Capture

# (centre, radii) of the ellipsoids whose union is the head
_PARTS = (((0.0, 0.0, 0.0), (0.075, 0.10, 0.09)),  # skull and face
          ((0.0, -0.005, 0.088), (0.014, 0.022, 0.02)))  # nose
# (centre, radii, colour factor) of darker texture blobs: brows, eyes, lips
_BLOBS = (((-0.03, 0.035, 0.08), (0.02, 0.005, 0.03), 0.45), ((0.03, 0.035, 0.08), (0.02, 0.005, 0.03), 0.45),
          ((-0.03, 0.018, 0.08), (0.012, 0.006, 0.03), 0.3), ((0.03, 0.018, 0.08), (0.012, 0.006, 0.03), 0.3),
          ((0.0, -0.045, 0.08), (0.025, 0.007, 0.03), 0.6))


def _intersect_ellipsoid(o: Tensor, d: Tensor, c: Tensor, r: Tensor) -> Tensor:
    """First positive hit distance of rays with an axis-aligned ellipsoid (inf on a miss)."""
    oc, dd = (o - c) / r, d / r
    a = (dd * dd).sum(-1)
    b = (oc * dd).sum(-1)
    cc = (oc * oc).sum(-1) - 1.0
    disc = b * b - a * cc
    t = (-b - disc.clamp(min=0).sqrt()) / a
    return torch.where((disc > 0) & (t > 0), t, torch.full_like(t, math.inf))


def _texture(p: Tensor, n: Tensor, seed: int, mouth: float) -> Tensor:
    """Shaded colour (…, 3) at surface points p with normals n."""
    g = torch.Generator().manual_seed(seed)
    k = 24
    dirs = torch.randn(k, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    freq = torch.exp(torch.empty(k).uniform_(math.log(60.0), math.log(500.0), generator=g))
    phase = torch.rand(k, generator=g) * 2 * math.pi
    amp = 0.5 / (1.0 + freq / 150.0)
    noise = (amp * torch.sin(p @ (dirs * freq[:, None]).T + phase)).sum(-1) / amp.sum() * 3.0
    albedo = torch.tensor([0.80, 0.60, 0.50]) * (1.0 + 0.12 * noise[..., None])
    for centre, radii, factor in _BLOBS:
        grow = torch.tensor([1.0 + mouth, 1.0 + 2 * mouth, 1.0]) if centre[1] < -0.03 else 1.0
        rad = torch.tensor(radii) * grow
        q = (p - torch.tensor(centre)) / rad
        w = torch.exp(-(q * q).sum(-1))[..., None]
        albedo = albedo * (1.0 - w * (1.0 - factor))
    light = torch.tensor([0.3, 0.5, 0.8])
    light = light / light.norm()
    shade = 0.35 + 0.65 * (n @ light).clamp(min=0.0)
    return (albedo * shade[..., None]).clamp(0.0, 1.0)


def render(cameras: Cameras, seed: int = 0, mouth: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Ray-cast the scene: rgb (V, H, W, 3), mask (V, H, W), ray distance t (V, H, W; 0 on background)."""
    o, d = cameras.rays()
    best = torch.full(o.shape[:-1], math.inf)
    normal = torch.zeros_like(o)
    for centre, radii in _PARTS:
        c, r = torch.tensor(centre), torch.tensor(radii)
        t = _intersect_ellipsoid(o, d, c, r)
        closer = t < best
        p = o + t.clamp(max=1e3)[..., None] * d
        nrm = (p - c) / r**2
        normal = torch.where(closer[..., None], nrm / nrm.norm(dim=-1, keepdim=True), normal)
        best = torch.where(closer, t, best)
    hit = torch.isfinite(best)
    t = torch.where(hit, best, torch.zeros_like(best))
    p = o + t[..., None] * d
    mouth = torch.zeros(len(cameras)) if mouth is None else mouth
    rgb = torch.stack([_texture(p[v], normal[v], seed, float(mouth[v])) for v in range(len(cameras))])
    rgb = torch.where(hit[..., None], rgb, torch.full_like(rgb, 0.1))
    return rgb, hit.float(), t


def spread_cameras(n: int = 4, size: int = 64, spread_deg: float = 120.0, distance: float = 0.9,
                   elevation_deg: float = 5.0) -> Cameras:
    """n cameras looking at the origin, evenly over `spread_deg` of azimuth in front of the face."""
    az = torch.linspace(-spread_deg / 2, spread_deg / 2, n)
    el = elevation_deg * torch.cos(torch.arange(n) * 2.0)  # a little vertical variety
    eye = spherical_eye(az, el, distance)
    focal = size * distance / 0.30  # the 0.30 m field of view holds the head
    return make_cameras(look_at(eye), focal, size)


def scene_capture(n: int = 4, size: int = 64, seed: int = 0, spread_deg: float = 120.0,
                  expressions: bool = True) -> tuple[Capture, Tensor]:
    """A capture of the analytic scene and its ground-truth ray distances (V, H, W)."""
    cams = spread_cameras(n, size, spread_deg)
    mouth = torch.linspace(0.0, 0.6, n) if expressions else None
    rgb, mask, t = render(cams, seed, mouth)
    return Capture(Path("."), rgb, mask, cams), t
