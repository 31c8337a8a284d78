"""Gaussians and cameras shared by the renderer's tests (a helper module, not a test module)."""

from __future__ import annotations

import math

import torch

from stages.cameras import Cameras, orbit
from stages.gaussians import Gaussians

F64 = torch.float64


def random_gaussians(n: int, seed: int, dtype=F64, sh_k: int = 0, scale: float = 0.02, op_shift: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    sh = 0.3 * torch.randn(n, sh_k, 3, generator=gen) if sh_k else None
    g = Gaussians((torch.rand(n, 3, generator=gen) * 2 - 1) * 0.15, torch.randn(n, 4, generator=gen),
                  math.log(scale) + 0.6 * torch.randn(n, 3, generator=gen),
                  1.5 * torch.randn(n, generator=gen) + op_shift, torch.rand(n, 3, generator=gen), sh)
    return g.to(dtype=dtype)


def odd_cameras(n: int = 3) -> Cameras:
    """Non-square cameras with off-centre principal points and unequal focal lengths."""
    c = orbit(n, radius=0.8, focal=55, size=37, sweep_deg=120)
    return Cameras(c.c2w, c.fx, c.fy * 1.1, c.cx + 1.3, c.cy - 2.2, 37, 29)
