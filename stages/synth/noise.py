"""Deterministic, resolution-independent 2D noise for procedural textures.

A texture must look the same whether a head is rendered at 128² or 1024², so noise is a fixed random lattice
(drawn once per identity from its seed) that is *sampled* at arbitrary parameter coordinates with bicubic
interpolation, rather than a random image at the render's resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class LatticeNoise:
    """Smooth noise on [0,1]², roughly in [-1, 1]: `cells` lattice cells per axis, optional wrap-around in v."""

    def __init__(self, cells: tuple[int, int], generator: torch.Generator, periodic_v: bool = False,
                 octaves: int = 1, gain: float = 0.5):
        self.periodic_v = periodic_v
        self.lattices = []
        self.weights = []
        cu, cv = cells
        for o in range(octaves):
            lat = torch.rand(cu * 2**o + 1, cv * 2**o + 1, generator=generator) * 2 - 1
            if periodic_v:
                lat[:, -1] = lat[:, 0]
            self.lattices.append(lat)
            self.weights.append(gain**o)
        total = sum(self.weights)
        self.weights = [w / total for w in self.weights]

    def __call__(self, u: Tensor, v: Tensor) -> Tensor:
        """Noise at parameter coordinates u, v (same shape, in [0, 1]); result has that shape."""
        shape = u.shape
        v = torch.remainder(v, 1.0) if self.periodic_v else v
        # grid_sample wants (x, y) = (column, row) in [-1, 1]
        grid = torch.stack([v.reshape(-1) * 2 - 1, u.reshape(-1) * 2 - 1], -1).reshape(1, 1, -1, 2)
        out = torch.zeros(u.numel(), device=u.device, dtype=u.dtype)
        for lat, w in zip(self.lattices, self.weights, strict=True):
            lat = lat.to(device=u.device, dtype=u.dtype)
            s = F.grid_sample(lat[None, None], grid, mode="bicubic", padding_mode="border", align_corners=True)
            out = out + w * s.reshape(-1)
        return (out * 1.6).reshape(shape)


def seeded(seed: int) -> torch.Generator:
    """A CPU generator for one texture layer (CPU so that draws are identical on every device)."""
    return torch.Generator().manual_seed(int(seed) % (2**63))
