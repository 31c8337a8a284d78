"""View-dependent colour from real spherical harmonics (degrees 0..3), in the basis order and sign convention
of the 3DGS reference code and gsplat, so PLY files from other tools shade the same here."""

from __future__ import annotations

import torch
from torch import Tensor

from stages.gaussians import SH_C0, Gaussians

_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
       1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Basis values (..., (degree+1)^2) at unit directions (..., 3)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z,
                _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def view_colors(g: Gaussians, campos: Tensor) -> Tensor:
    """Per-camera RGB (C, N, 3) seen from camera centres `campos` (C, 3), clamped at 0 below as gsplat does.

    Without higher bands the colour is the same for every camera (the degree-0 colour)."""
    if g.sh_rest is None:
        return g.colors.clamp_min(0.0)[None].expand(campos.shape[0], -1, -1)
    dirs = g.means[None] - campos[:, None, :]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(g.sh_degree, dirs)[..., 1:]  # (C, N, K): band 0 is already in `colors`
    rgb = g.colors[None] + torch.einsum("cnk,nkd->cnd", basis, g.sh_rest)
    return rgb.clamp_min(0.0)
