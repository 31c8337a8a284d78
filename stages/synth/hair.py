"""Hair: one continuous surface over the scalp that, for long styles, keeps going straight down past the ears.

The surface is a function of (u, φ): for u up to the drop line it is the scalp at polar angle θ = u pushed out
along the normal by the local hair thickness (which fades to nothing at the hairline); past the drop line
(long hair only) it falls vertically from the drop line, flaring out just enough to clear the ears and jaw, and
ends in a ragged edge. Being a function, stretched cells (the rise at a thick hairline) are refilled exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stages.synth.grids import SIDE_SHEET, Grid, arc_samples, bands, grid_normals, refine
from stages.synth.identity import HeadIdentity
from stages.synth.noise import LatticeNoise, seeded
from stages.synth.rig import Rig
from stages.synth.shape import CENTRE, THETA_MAX, RadiusMap
from stages.synth.skin import Textures, hair_albedo, hair_mask, skin_albedo, smoothstep

DROP_DEG = 96.0  # where long hair leaves the scalp and falls
NAPE_DEG = 142.0  # the last row of short hair at the back
R_REF = 0.09  # metres per radian of u below the drop line


class Hair:
    """The hair of one identity."""

    def __init__(self, idn: HeadIdentity, rig: Rig, tex: Textures, rmap: RadiusMap, device):
        self.idn, self.rig, self.tex, self.rmap, self.device = idn, rig, tex, rmap, device
        self.long = idn.hair_style in ("long", "medium", "volume") and idn.hair_length > 0.03
        self.drop = math.radians(DROP_DEG)
        self.u_max = self.drop + idn.hair_length * 1.15 / R_REF if self.long else math.radians(NAPE_DEG)
        self.bumps = LatticeNoise((20, 40), seeded(idn.texture_seed + 50), periodic_v=True, octaves=2, gain=0.35)
        self.ends = LatticeNoise((1, 60), seeded(idn.texture_seed + 51), periodic_v=True)
        if self.long:
            # how far the falling hair must stand off the scalp's drop line to clear the head, ears and jaw
            ph = torch.linspace(-math.pi, math.pi, 181, device=device)[:-1]
            th = torch.linspace(self.drop, THETA_MAX, 40, device=device)
            tt, pp = torch.meshgrid(th, ph, indexing="ij")
            p = rmap.point(tt, pp)
            horiz = (p[..., 0] ** 2 + (p[..., 2] - CENTRE[2]) ** 2).sqrt().amax(0)
            top = rmap.point(torch.full_like(ph, self.drop), ph)
            top_h = (top[..., 0] ** 2 + (top[..., 2] - CENTRE[2]) ** 2).sqrt()
            ears = torch.exp(-((ph.abs() - math.radians(102.0)) / math.radians(22.0)) ** 2)
            self.clear = (horiz - top_h).clamp(min=0) + 0.004 + 0.02 * ears  # (180,) over φ

    # ----- the surface function ------------------------------------------------------------------------------
    def _scalp(self, th: Tensor, ph: Tensor) -> tuple[Tensor, Tensor]:
        """Scalp points and outward unit normals (finite differences of the radius map)."""
        e = 1e-3
        p = self.rmap.point(th, ph)
        dt = self.rmap.point(th + e, ph) - self.rmap.point(th - e, ph)
        dp = self.rmap.point(th, ph + e) - self.rmap.point(th, ph - e)
        n = torch.cross(dt, dp, dim=-1)
        out = p - p.new_tensor(CENTRE)
        out = out / out.norm(dim=-1, keepdim=True)
        norm = n.norm(dim=-1, keepdim=True)
        n = torch.where(norm > 1e-9, n / norm.clamp(min=1e-12), out)  # at the crown the azimuth degenerates
        n = torch.where(((n * out).sum(-1) < 0)[..., None], -n, n)
        return p, n

    def thickness(self, p: Tensor, th: Tensor, ph: Tensor) -> tuple[Tensor, Tensor]:
        """(hair density, thickness in metres) at scalp points."""
        idn = self.idn
        mask = hair_mask(p, th, ph, idn, self.rig, self.tex)
        if idn.hair_thickness <= 0:
            return mask, torch.zeros_like(mask)
        u, v = th / THETA_MAX, (ph + math.pi) / (2 * math.pi)
        t = idn.hair_thickness * smoothstep(0.0, 1.0, mask) ** 0.8
        t = t * (1 + 0.1 * self.tex.mottle(u * 0.5, v))
        if idn.hair_style == "volume":
            t = t * (0.7 + 0.45 * torch.sin(th).clamp(min=0))
        elif idn.hair_style in ("long", "medium"):
            t = t * (0.65 + 0.45 * torch.sin(th).clamp(min=0))
        if idn.curl > 0.3:  # curls make a bumpy outline (gently: steep bumps would need many more samples)
            t = t + smoothstep(0.0, 1.0, mask) * min(0.0025, 0.2 * idn.hair_thickness) * idn.curl * self.bumps(u, v)
        return mask, t

    def surface(self, u: Tensor, ph: Tensor) -> tuple[Tensor, Tensor]:
        """(points (…, 3), density (…)) of the hair at parameters (u, φ)."""
        th = u.clamp(max=self.drop) if self.long else u
        p, n = self._scalp(th, ph)
        mask, t = self.thickness(p, th, ph)
        pos = p + n * (t + 0.0005)[..., None]
        if not self.long:
            return pos, mask
        fall = ((u - self.drop) * R_REF).clamp(min=0)  # metres below the drop line
        idx = (((ph + math.pi) / (2 * math.pi)) * 180).long().clamp(0, 179)
        radial = torch.stack([n[..., 0], torch.zeros_like(n[..., 0]), n[..., 2]], -1)
        radial = radial / radial.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        flare = self.clear.to(u.device)[idx] * smoothstep(0.0, 0.035, fall) + 0.08 * fall
        pos = pos + radial * flare[..., None] - fall[..., None] * pos.new_tensor((0.0, 1.0, 0.0))
        # length: shorter toward the face, ragged at the ends
        aphi = ph.abs()
        length = self.idn.hair_length * (0.3 + 0.7 * smoothstep(math.radians(55.0), math.radians(105.0), aphi))
        length = length * (1 + 0.12 * self.ends(torch.zeros_like(u), (ph + math.pi) / (2 * math.pi)))
        mask = mask * smoothstep(length + 0.004, length - 0.004, fall)
        return pos, mask

    # ----- the sampled grid ----------------------------------------------------------------------------------
    def grids(self, h: float) -> list[Grid]:
        """The hair sampled about h apart in latitude bands (plus refill of stretched cells); none if bald."""
        if self.idn.hair_thickness < 0.0025:
            return []
        # measure the surface on a coarse lattice: arc length down the hair and the widest way around
        cu = torch.linspace(0.0, self.u_max, 200, device=self.device)
        cp = torch.linspace(-math.pi, math.pi, 361, device=self.device)[:-1]
        pos, mask = self.surface(*torch.meshgrid(cu, cp, indexing="ij"))
        seg = (pos[1:] - pos[:-1]).norm(dim=-1)
        has = (mask[1:] > 0.03) | (mask[:-1] > 0.03)
        seg = torch.where(has, seg, 0.0)
        us = arc_samples(cu, torch.quantile(seg, 0.9, dim=1).clamp(min=1e-5), h)
        around = (torch.roll(pos, -1, 1) - pos).norm(dim=-1)  # (200, 360) azimuth steps

        def ring(lo: float, hi: float) -> Tensor:
            i0 = max(0, int(lo / self.u_max * 199))
            i1 = min(200, int(math.ceil(hi / self.u_max * 199)) + 1)
            return around[i0:i1].amax(0)

        return [self._band(rows, phs, h) for rows, phs in bands(us, ring, h)]

    def _band(self, u: Tensor, ph: Tensor, h: float) -> Grid:
        uu, pp = torch.meshgrid(u, ph, indexing="ij")
        pos, mask = self.surface(uu, pp)
        keep = mask > 0.03
        params = torch.stack([uu, pp, torch.zeros_like(uu)], -1)
        g = Grid("hair", pos, torch.zeros_like(pos), periodic_v=True, side=SIDE_SHEET, keep=keep)
        n = grid_normals(pos, True)
        out = pos - pos.new_tensor(CENTRE)
        out[..., 1] = out[..., 1].clamp(min=0)
        g.flip = bool((n * out).sum(-1).mean() < 0)
        n = -n if g.flip else n

        def at(q: Tensor) -> Tensor:
            p, m = self.surface(q[:, 0], q[:, 1])
            return torch.cat([p, q[:, :2], m[:, None]], -1)

        extra, (en,) = refine(params, pos, h, at, periodic_v=True, keep=keep, max_split=6, attrs=[n],
                              period=params.new_tensor((0.0, 2 * math.pi, 0.0)))
        if extra.shape[0] == 0:
            extra = pos.new_zeros(0, 6)
        ok = extra[:, 5] > 0.03
        en = en[ok] / en[ok].norm(dim=-1, keepdim=True).clamp(min=1e-9)
        g.extras = {"u": uu, "ph": pp, "mask": mask, "normal": n, "extra": extra[ok], "extra_normal": en}
        return g

    def colours(self, u: Tensor, ph: Tensor, mask: Tensor, n: Tensor) -> Tensor:
        """Hair albedo, thinning to the skin's colour where the hair is sparse (the hairline)."""
        idn = self.idn
        th = u.clamp(max=self.drop if self.long else u.max())
        col = hair_albedo(th, ph, idn, self.tex, along=(u / self.u_max).clamp(0, 1))
        thin = (mask < 0.999) & (u <= self.drop + 1e-4) if self.long else mask < 0.999
        if bool(thin.any()):
            p = self.rmap.point(th[thin], ph[thin])
            skin, _ = skin_albedo(p, th[thin], ph[thin], n[thin], idn, self.rig, self.tex)
            d = (mask[thin] ** 0.6 * (0.8 + 0.2 * self.tex.fine(th[thin] / THETA_MAX, (ph[thin] + math.pi) /
                                                                (2 * math.pi)))).clamp(0, 1)[..., None]
            col[thin] = skin * (1 - d) + col[thin] * d
        # the ends of long hair are a little lighter, the roots and the hidden inside darker
        fall = ((u - self.drop) * R_REF).clamp(min=0) if self.long else torch.zeros_like(u)
        return (col * (1 + 0.15 * smoothstep(0.02, 0.2, fall))[..., None]).clamp(0, 1)
