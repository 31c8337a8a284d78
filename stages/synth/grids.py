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
from dataclasses import dataclass, field

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


def arc_samples(samples: Tensor, lengths: Tensor, spacing: float) -> Tensor:
    """Resample a sorted parameter so that consecutive values are about `spacing` apart along a curve whose
    segment lengths between `samples` are `lengths` (len(samples) - 1)."""
    arc = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
    n = max(8, int(math.ceil(float(arc[-1]) / spacing)) + 1)
    target = torch.linspace(0, float(arc[-1]), n, device=arc.device, dtype=arc.dtype)
    i = torch.searchsorted(arc, target).clamp(1, len(samples) - 1)
    a0, a1 = arc[i - 1], arc[i]
    t = ((target - a0) / (a1 - a0).clamp(min=1e-12)).clamp(0, 1)
    return samples[i - 1] + t * (samples[i] - samples[i - 1])


def bands(rows: Tensor, ring: Callable[[float, float], Tensor], spacing: float,
          rows_per_band: int = 40) -> list[tuple[Tensor, Tensor]]:
    """Split a periodic lattice's rows into latitude bands that share their boundary rows, each sampled around
    by arc length: `ring(lo, hi)` gives (K,) lengths of K equal azimuth steps from -π (the longest over rows
    lo..hi). One uniform lattice would sample every row and every side like the widest row's widest part (the
    crown, the chin and the narrow sides of the head would be two or three times denser than needed).
    Returns [(band rows, band azimuths)]."""
    out = []
    n = rows.shape[0]
    start = 0
    while start < n - 1:
        stop = min(n, start + rows_per_band + 1)
        if n - stop < rows_per_band // 3:  # no sliver of a band at the end
            stop = n
        seg = ring(float(rows[start]), float(rows[stop - 1]))
        k = seg.shape[0]
        angles = torch.linspace(-math.pi, math.pi, k + 1, device=rows.device, dtype=rows.dtype)
        phis = arc_samples(angles, seg.to(rows.dtype).clamp(min=1e-6), spacing)[:-1]
        out.append((rows[start:stop], phis))
        start = stop - 1
    return out


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
           attrs: list[Tensor] | None = None, period: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
    """Extra samples for cells that the posed surface stretched beyond `spacing`.

    A cell is refilled when its longer diagonal exceeds √2·spacing (a square cell of side `spacing` is just
    fine); it gets ku×kv interior samples, ku and kv = ceil(edge / spacing) along each direction (capped at
    max_split). Rest positions are interpolated and re-deformed, so deformation seams (the parted lips) stay
    open instead of being bridged. `period` is added to the wrapped-around column of `rest` (for a rest grid of
    parameters such as an azimuth). Returns (deform's output for the new samples (M, …), interpolated
    attributes (each (M, C)))."""
    attrs = attrs or []
    if periodic_v:
        rest = torch.cat([rest, rest[:, :1] + (period if period is not None else 0)], 1)
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
    if iu.numel() == 0:  # nothing stretched (the caller sizes an empty result for its deform)
        return rest.new_zeros(0, 3), [a.new_zeros(0, a.shape[-1]) for a in attrs]
    eu = torch.maximum((c10 - c00).norm(dim=-1), (c11 - c01).norm(dim=-1))[iu, iv]
    ev = torch.maximum((c01 - c00).norm(dim=-1), (c11 - c10).norm(dim=-1))[iu, iv]
    ku = (eu / spacing).ceil().clamp(1, max_split).long()
    kv = (ev / spacing).ceil().clamp(1, max_split).long()
    # all cells at once (one deform call, which matters on a GPU): sample j of a cell sits at
    # ((j // kv + 0.5) / ku, (j % kv + 0.5) / kv), interior points that never duplicate the corners
    per = ku * kv
    cell = torch.repeat_interleave(torch.arange(per.shape[0], device=rest.device), per)
    j = torch.arange(cell.shape[0], device=rest.device) - torch.repeat_interleave(torch.cumsum(per, 0) - per, per)
    su = ((j // kv[cell]).to(rest.dtype) + 0.5) / ku[cell].to(rest.dtype)
    sv = ((j % kv[cell]).to(rest.dtype) + 0.5) / kv[cell].to(rest.dtype)
    w = torch.stack([(1 - su) * (1 - sv), su * (1 - sv), (1 - su) * sv, su * sv], -1)  # (M, 4)
    a, b = iu[cell], iv[cell]

    def lerp(x: Tensor) -> Tensor:
        return (x[a, b] * w[:, :1] + x[a + 1, b] * w[:, 1:2] + x[a, b + 1] * w[:, 2:3]
                + x[a + 1, b + 1] * w[:, 3:])

    return deform(lerp(rest)), [lerp(at) for at in attrs]
