"""The `Gaussians` container: one set of 3D Gaussians in world space, stored with the unconstrained
parameterisation the network predicts and the 3DGS PLY format stores (log scales, opacity logits, SH colours),
so nothing is lost in a save/load round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

from stages.errors import BadInput

SH_C0 = 0.28209479177387814  # degree-0 SH basis: rgb = 0.5 + SH_C0 * f_dc
SH_REST_SIZES = {3: 1, 8: 2, 15: 3}  # higher-band coefficient count K -> SH degree


@dataclass
class Gaussians:
    """N Gaussians. Colours are the degree-0 RGB; `sh_rest` (optional) adds view-dependent bands 1..3."""

    means: Tensor  # (N, 3) world, metres
    quats: Tensor  # (N, 4) (w, x, y, z); normalised where used
    log_scales: Tensor  # (N, 3) natural log of the standard deviations
    opacity_logits: Tensor  # (N,)
    colors: Tensor  # (N, 3) RGB of SH degree 0 (rgb = 0.5 + SH_C0 * f_dc); may leave [0, 1] slightly
    sh_rest: Tensor | None = None  # (N, K, 3) higher SH bands, K = 3, 8 or 15

    # ----- basic access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def sh_degree(self) -> int:
        """0 without `sh_rest`, else 1, 2 or 3."""
        if self.sh_rest is None:
            return 0
        k = self.sh_rest.shape[1]
        if k not in SH_REST_SIZES:
            raise ValueError(f"sh_rest has {k} coefficients per channel; expected 3, 8 or 15")
        return SH_REST_SIZES[k]

    def scales(self) -> Tensor:
        return self.log_scales.exp()

    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    def _map(self, fn) -> Gaussians:
        return Gaussians(*(None if (v := getattr(self, f.name)) is None else fn(v) for f in fields(self)))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Gaussians:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> Gaussians:
        return self._map(lambda t: t.detach())

    def select(self, index: Tensor | Sequence[int] | slice) -> Gaussians:
        """A subset by boolean mask, integer indices or slice (the same rows of every field)."""
        if not isinstance(index, slice | Tensor):
            index = torch.as_tensor(index, device=self.device)
            if index.dtype != torch.bool:
                index = index.long()
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(items: Sequence[Gaussians]) -> Gaussians:
        """Concatenate sets; sets with fewer (or no) SH bands get zero coefficients for the missing ones."""
        if not items:
            raise ValueError("cannot concatenate an empty list of Gaussians")
        ks = [0 if g.sh_rest is None else g.sh_rest.shape[1] for g in items]
        k = max(ks)
        parts = {f.name: torch.cat([getattr(g, f.name) for g in items]) for f in fields(Gaussians)
                 if f.name != "sh_rest"}
        sh = None
        if k:
            sh = torch.cat([torch.nn.functional.pad(g.sh_rest, (0, 0, 0, k - kg)) if g.sh_rest is not None
                            else g.means.new_zeros(len(g), k, 3) for g, kg in zip(items, ks, strict=True)])
        return Gaussians(**parts, sh_rest=sh)

    # ----- checks -----------------------------------------------------------------------------------------
    def validate(self, source: str | Path) -> Gaussians:
        """Refuse inconsistent shapes, NaN/Inf and zero-length quaternions as BadInput naming `source`."""
        if self.means.dim() != 2 or self.means.shape[1] != 3:
            raise BadInput(f"Gaussian field 'means' has shape {tuple(self.means.shape)}, expected (N, 3)",
                           source)
        n = len(self)
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,),
                    "colors": (n, 3)}
        for name, shape in expected.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise BadInput(f"Gaussian field '{name}' has shape {tuple(t.shape)}, expected {shape} "
                               f"(N = {n})", source)
        if self.sh_rest is not None and (self.sh_rest.dim() != 3 or self.sh_rest.shape[0] != n
                                         or self.sh_rest.shape[1] not in SH_REST_SIZES
                                         or self.sh_rest.shape[2] != 3):
            raise BadInput(f"Gaussian field 'sh_rest' has shape {tuple(self.sh_rest.shape)}, expected "
                           f"({n}, K, 3) with K in 3, 8, 15", source)
        for f in fields(self):
            t = getattr(self, f.name)
            if t is None:
                continue
            if not t.is_floating_point():
                raise BadInput(f"Gaussian field '{f.name}' is not floating point ({t.dtype})", source)
            if not bool(torch.isfinite(t).all()):
                raise BadInput(f"Gaussian field '{f.name}' contains NaN or Inf", source)
        if n and bool((self.quats.norm(dim=-1) == 0).any()):
            raise BadInput("some Gaussians have a zero-length rotation quaternion", source)
        return self
