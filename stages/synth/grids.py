"""Surface patches as parameter grids: the unit the head is built from.

A `Grid` holds samples of one surface on a (U, V) parameter lattice: rest positions, albedo, ambient occlusion
and a keep-mask (samples hidden for good, e.g. inside the skull). Grids give normals for free (finite
differences of neighbours, recomputed after every deformation) and let stretched cells be refilled: when an
expression stretches a cell beyond the sample spacing the renderer needs, extra samples are made by bilinear
interpolation of the *rest* cell and pushed through the same deformation, so a torn seam (the parted lips)
stays torn instead of being bridged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

SIDE_CLOSED = 0  # seen from behind: the inside of the head (dark)
SIDE_SHEET = 1  # two-sided: the back shows the same material, lit from its own side


@dataclass
class Grid:
    """Samples of one surface patch on a (U, V) lattice."""

    name: str
    rest: Tensor  # (U, V, 3)
    albedo: Tensor  # (U, V, 3) sRGB
    ao: Tensor | None = None  # (U, V) in [0, 1], 1 = unoccluded
    keep: Tensor | None = None  # (U, V) bool
    periodic_v: bool = False
    side: int = SIDE_CLOSED
    back_albedo: Tensor | None = None  # (U, V, 3) for sheets whose back looks different
    flip: bool = False  # normals from the lattice point the wrong way (inner surfaces)
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rest.shape[0], self.rest.shape[1]

    def with_positions(self, pos: Tensor) -> Grid:
        return replace(self, rest=pos)


def lattice(u0: float, u1: float, nu: int, v0: float, v1: float, nv: int, device, periodic_v: bool = False,
            dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """(U, V) parameter arrays spanning [u0,u1]×[v0,v1]; a periodic v leaves out the repeated end."""
    u = torch.linspace(u0, u1, max(nu, 2), device=device, dtype=dtype)
    v = (torch.linspace(v0, v1, max(nv, 2) + 1, device=device, dtype=dtype)[:-1] if periodic_v
         else torch.linspace(v0, v1, max(nv, 2), device=device, dtype=dtype))
    return torch.meshgrid(u, v, indexing="ij")


def count(length_m: float, spacing: float, lo: int = 4, hi: int = 4096) -> int:
    """Number of samples so that `length_m` is sampled at most `spacing` apart."""
    return int(min(hi, max(lo, math.ceil(length_m / spacing) + 1)))


def grid_normals(pos: Tensor, periodic_v: bool = False, flip: bool = False) -> Tensor:
    """Unit normals (U, V, 3) = d/du × d/dv by central differences (one-sided at open edges)."""
    du = torch.empty_like(pos)
    du[1:-1] = pos[2:] - pos[:-2]
    du[0] = pos[1] - pos[0]
    du[-1] = pos[-1] - pos[-2]
    if periodic_v:
        dv = torch.roll(pos, -1, 1) - torch.roll(pos, 1, 1)
    else:
        dv = torch.empty_like(pos)
        dv[:, 1:-1] = pos[:, 2:] - pos[:, :-2]
        dv[:, 0] = pos[:, 1] - pos[:, 0]
        dv[:, -1] = pos[:, -1] - pos[:, -2]
    n = torch.cross(du, dv, dim=-1)
    # at a pole one direction degenerates: borrow the neighbour row's normal
    bad = n.norm(dim=-1) < 1e-12
    if bool(bad.any()):
        n = torch.where(bad[..., None], torch.roll(n, 1, 0), n)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return -n if flip else n


def refine(rest: Tensor, posed: Tensor, spacing: float, deform: Callable[[Tensor], Tensor],
           periodic_v: bool = False, max_split: int = 6, keep: Tensor | None = None,
           attrs: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
    """Extra samples for cells that the posed surface stretched beyond `spacing`.

    A cell is refilled when its longer diagonal exceeds √2·spacing (a square cell of side `spacing` is just
    fine); it gets ku×kv interior samples, ku and kv = ceil(edge / spacing) along each direction (capped at
    max_split). Rest positions are interpolated and re-deformed, so deformation seams (the parted lips) stay
    open instead of being bridged. Returns (posed points (M, 3), interpolated attributes (each (M, C)))."""
    attrs = attrs or []
    if periodic_v:
        rest = torch.cat([rest, rest[:, :1]], 1)
        posed = torch.cat([posed, posed[:, :1]], 1)
        attrs = [torch.cat([a, a[:, :1]], 1) for a in attrs]
        if keep is not None:
            keep = torch.cat([keep, keep[:, :1]], 1)
    c00, c10, c01, c11 = posed[:-1, :-1], posed[1:, :-1], posed[:-1, 1:], posed[1:, 1:]
    diag = torch.maximum((c11 - c00).norm(dim=-1), (c10 - c01).norm(dim=-1))
    need = diag > spacing * 2**0.5
    if keep is not None:
        need &= keep[:-1, :-1] | keep[1:, :-1] | keep[:-1, 1:] | keep[1:, 1:]
    iu, iv = torch.nonzero(need, as_tuple=True)
    if iu.numel() == 0:
        return rest.new_zeros(0, 3), [a.new_zeros(0, a.shape[-1]) for a in attrs]
    eu = torch.maximum((c10 - c00).norm(dim=-1), (c11 - c01).norm(dim=-1))[iu, iv]
    ev = torch.maximum((c01 - c00).norm(dim=-1), (c11 - c10).norm(dim=-1))[iu, iv]
    ku = (eu / spacing).ceil().clamp(1, max_split).long()
    kv = (ev / spacing).ceil().clamp(1, max_split).long()
    code = ku * (max_split + 1) + kv
    pts, outs = [], [[] for _ in attrs]
    for c in torch.unique(code).tolist():
        nu_, nv_ = divmod(int(c), max_split + 1)
        sel = code == c
        a, b = iu[sel], iv[sel]
        # interior samples at (i + 0.5) / k avoid duplicating the cell's corners
        tu = (torch.arange(nu_, device=rest.device, dtype=rest.dtype) + 0.5) / nu_
        tv = (torch.arange(nv_, device=rest.device, dtype=rest.dtype) + 0.5) / nv_
        su, sv = (t.reshape(-1, 1) for t in torch.meshgrid(tu, tv, indexing="ij"))
        w = torch.cat([(1 - su) * (1 - sv), su * (1 - sv), (1 - su) * sv, su * sv], -1)  # (k, 4)

        def lerp(x: Tensor, a=a, b=b, w=w) -> Tensor:
            corners = torch.stack([x[a, b], x[a + 1, b], x[a, b + 1], x[a + 1, b + 1]], 1)  # (C, 4, ch)
            return torch.einsum("mq,cqd->cmd", w, corners).reshape(-1, x.shape[-1])

        pts.append(deform(lerp(rest)))
        for j, at in enumerate(attrs):
            outs[j].append(lerp(at))
    return torch.cat(pts), [torch.cat(o) for o in outs]
