"""A built head: every surface of one identity sampled at one density, ready to be posed by an expression.

Building (once per identity and density; cached) does the expensive work: tracing the skin's radius map and
occlusion, painting albedo, placing hair, ears, neck, teeth and eyes, and shading everything that never moves.
Posing (once per expression) deforms the face, refills stretched skin, turns the eyes, rebuilds the lids, moves
the jaw and shades what moved. The result is a `Cloud` of oriented, coloured samples for the rasteriser.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stages.synth import parts
from stages.synth.grids import SIDE_SHEET, Grid, bands, count, grid_normals, lattice, refine
from stages.synth.hair import Hair
from stages.synth.identity import HeadIdentity
from stages.synth.rig import Rig, apply_jaw, face_deform, gaze, gaze_matrix, lid_shape, weights
from stages.synth.shading import interior, lights_for, shade
from stages.synth.shape import CENTRE, THETA_MAX, RadiusMap, anatomy
from stages.synth.skin import Textures, hair_albedo, skin_albedo, smoothstep

LABELS = {"background": 0, "skin": 1, "hair": 2, "eye": 3, "teeth": 4, "mouth": 5, "tongue": 6, "cloth": 7}


@dataclass
class Cloud:
    """Oriented coloured samples: what the rasteriser draws."""

    points: Tensor  # (N, 3)
    normals: Tensor  # (N, 3)
    front: Tensor  # (N, 3) sRGB seen from the normal's side
    back: Tensor  # (N, 3) sRGB seen from behind
    label: Tensor  # (N,) int64, see LABELS
    two_sided: Tensor  # (N,) bool: sheets (ears, hair, teeth, mouth) are drawn from both sides

    @staticmethod
    def cat(items: list[Cloud]) -> Cloud:
        return Cloud(*(torch.cat([getattr(c, k) for c in items]) for k in ("points", "normals", "front", "back",
                                                                             "label", "two_sided")))


def make_rig(idn: HeadIdentity) -> Rig:
    """Landmarks measured on the rest skin (lip, brow and cheek depth; the eyeball sits in its socket)."""
    an = anatomy(idn)
    lip_z = 0.2 - parts.trace_ray(idn, (0.0, an.mouth_y, 0.2), (0, 0, -1))
    brow_z = 0.2 - parts.trace_ray(idn, (an.eye_x, an.brow_y, 0.2), (0, 0, -1))
    cheek_z = 0.2 - parts.trace_ray(idn, (0.038, an.mouth_y + 0.02, 0.2), (0, 0, -1))
    socket_z = 0.2 - parts.trace_ray(idn, (an.eye_x, an.eye_y, 0.2), (0, 0, -1))
    eye_z = socket_z - idn.eye_radius + 0.0042
    return Rig(mouth_y=an.mouth_y, mouth_w=an.mouth_w, lip_z=lip_z, hinge=an.jaw_hinge, eye_x=an.eye_x,
               eye_y=an.eye_y, eye_z=eye_z, eye_r=idn.eye_radius, brow_y=an.brow_y, brow_z=brow_z,
               nose_tip=an.nose_tip, nose_w=idn.nose_width, cheek_z=cheek_z)


def _oriented(g: Grid, outward: Tensor) -> Grid:
    """Set the grid's flip flag so that its normals agree with a rough outward direction field."""
    n = grid_normals(g.rest, g.periodic_v)
    g.flip = bool((n * outward).sum(-1).mean() < 0)
    return g


class HeadModel:
    """One identity at one sample spacing `h` (metres)."""

    def __init__(self, idn: HeadIdentity, h: float, device: torch.device | str = "cpu"):
        self.idn, self.h, self.device = idn, float(h), torch.device(device)
        self._consts: dict[tuple, Tensor] = {}
        dev = self.device
        self.rig = rig = make_rig(idn)
        self.tex = tex = Textures.of(idn)
        self.lights = lights_for(idn)
        # the shape maps need about twice the sample density; coarse builds (small images) get coarse maps
        self.rmap = rmap = RadiusMap(idn, dev, detail=min(1.0, max(0.25, 0.0012 / h)))
        self.hair = Hair(idn, rig, tex, rmap, dev)
        # --- skin over the skull parameters: a main lattice plus finer patches where the surface is steep
        ths = rmap.theta_samples(h)
        windows = self._patch_windows()
        self.skins: list[Grid] = []
        # latitude bands save samples on a CPU; a GPU prefers fewer, bigger grids (fewer kernel launches)
        for rows, phs in bands(ths, rmap.ring, h, rows_per_band=40 if dev.type == "cpu" else 10**6):
            th, ph = torch.meshgrid(rows, phs, indexing="ij")
            g = self._skin_grid(th, ph, periodic=True)
            for t0, t1, p0, p1 in (w for w, _ in windows):
                g.keep = g.keep & ~((th >= t0) & (th <= t1) & (ph >= p0) & (ph <= p1))
            self.skins.append(g)
        for (t0, t1, p0, p1), factor in windows:
            nt = count(float(self.rmap.sample(ths.new_tensor(0.5 * (t0 + t1)), ths.new_tensor(0.0))[0]) * (t1 - t0),
                       h / factor)
            npp = count(0.1 * (p1 - p0), h / factor)
            pt, pp = lattice(t0, t1, nt, p0, p1, npp, dev)
            self.skins.append(self._skin_grid(pt, pp, periodic=False))
        # skin samples an expression can move: the face below the forehead, in front of the ears
        self.movable = [(g.rest[..., 2] > rig.hinge[2] - 0.045) & (g.rest[..., 1] < rig.brow_y + 0.075)
                        for g in self.skins]
        # --- static parts (hair, neck, ears, upper teeth, upper mouth) are shaded once
        static: list[Cloud] = []
        for hg in self.hair.grids(h):
            static.append(self._hair_cloud(hg))
        neck = parts.neck(idn, rig, h, dev)
        radial = torch.stack([neck.rest[..., 0], torch.zeros_like(neck.rest[..., 0]), neck.rest[..., 2] + 0.012], -1)
        _oriented(neck, radial)
        cloth = neck.extras["cloth"].reshape(-1)
        nc = self._shade_static(neck, LABELS["skin"])
        keep = neck.keep.reshape(-1)
        nc.label = torch.where(cloth[keep] > 0.5, LABELS["cloth"], LABELS["skin"])
        static.append(nc)
        for side in (1.0, -1.0):
            e = parts.ear(idn, rig, h, dev, side)
            _oriented(e, e.rest.new_tensor((side, 0.0, 0.0)).expand_as(e.rest))
            static.append(self._shade_static(e, LABELS["skin"]))
        up = parts.teeth(idn, rig, h, dev, upper=True)
        _oriented(up, self._arch_out(up.rest))
        static.append(self._shade_static(up, LABELS["teeth"]))
        bowl = parts.mouth_bowl(idn, rig, h, dev)
        _oriented(bowl, bowl.rest.new_tensor((0.0, rig.mouth_y, rig.lip_z - 0.026)) - bowl.rest)
        lower_bowl = bowl.extras["lower"] > 0.5
        upper_bowl = Grid("mouth", bowl.rest, bowl.albedo, ao=bowl.ao, keep=bowl.keep & ~lower_bowl,
                          periodic_v=True, side=SIDE_SHEET, back_albedo=bowl.albedo, flip=bowl.flip)
        static.append(self._shade_static(upper_bowl, LABELS["mouth"]))
        self.static = Cloud.cat(static)
        # --- parts that move with the jaw (shaded per pose)
        lo = parts.teeth(idn, rig, h, dev, upper=False)
        _oriented(lo, self._arch_out(lo.rest))
        self.lower_bowl = Grid("mouth", bowl.rest, bowl.albedo, ao=bowl.ao, keep=bowl.keep & lower_bowl,
                               periodic_v=True, side=SIDE_SHEET, back_albedo=bowl.albedo, flip=bowl.flip)
        tg = parts.tongue(idn, rig, h, dev)
        _oriented(tg, tg.rest.new_tensor((0.0, 1.0, 0.0)).expand_as(tg.rest))
        self.jaw_parts = [(lo, LABELS["teeth"]), (self.lower_bowl, LABELS["mouth"]), (tg, LABELS["tongue"])]
        self.tongue = tg
        self.tongue_front = float(tg.rest[..., 2].max())
        # --- eyes: one eyeball template, lid parameters and colours per side
        self.eyeball = parts.eyeball(idn, h, dev)
        self.eyeball_normals = self.eyeball.rest / self.eyeball.rest.norm(dim=-1, keepdim=True)
        self.lid_b, self.lid_t = parts.lid_lattice(idn, h, dev)
        self.lid_ao = 0.9 - 0.35 * smoothstep(0.35, 0.9, self.lid_t) - 0.1 * smoothstep(0.5, 0.0, self.lid_t)
        self.lid_albedo = {(s, up): parts.lid_albedo(idn, self.lid_b, self.lid_t, up, sg)
                           for s, sg in (("Left", 1.0), ("Right", -1.0)) for up in (True, False)}

    # ----- helpers -------------------------------------------------------------------------------------------
    def _skin_grid(self, th: Tensor, ph: Tensor, periodic: bool):
        """Skin samples at parameters (θ, φ): albedo, occlusion, beard relief, and samples hidden under hair."""
        idn, rig, tex = self.idn, self.rig, self.tex
        r, ao = self.rmap.sample(th, ph)
        dirs = torch.stack([torch.sin(th) * torch.sin(ph), torch.cos(th), torch.sin(th) * torch.cos(ph)], -1)
        pos = dirs.new_tensor(CENTRE) + dirs * r[..., None]
        n = grid_normals(pos, periodic_v=periodic)
        if float((n * dirs).sum(-1).mean()) < 0:
            n = -n
        albedo, beard = skin_albedo(pos, th, ph, n, idn, rig, tex)
        mask, thick = self.hair.thickness(pos, th, ph)
        if idn.hair_thickness < 0.0025:
            grain = hair_albedo(th, ph, idn, tex)
            cover = (mask * (0.55 + 0.4 * min(1.0, idn.hair_thickness / 0.002)))[..., None]
            albedo = albedo * (1 - cover) + grain * cover
            thick = torch.zeros_like(thick)
        skin_pos = pos + n * (idn.beard_length * beard)[..., None]
        hidden = (mask > 0.985) & (thick > 0.0025)
        g = Grid("skin", skin_pos, albedo, ao=ao, keep=~hidden, periodic_v=periodic)
        _oriented(g, dirs)
        return g

    def _patch_windows(self) -> list[tuple[tuple[float, float, float, float], float]]:
        """(θ0, θ1, φ0, φ1) windows of denser skin: the nose (steep sides and underside)."""
        rig = self.rig
        cy = CENTRE[1]

        def theta(y: float, z: float) -> float:
            return math.atan2(z, y - cy)

        tip = rig.nose_tip
        t0, t1 = theta(rig.eye_y + 0.006, 0.09), theta(tip[1] - 0.016, 0.1)
        half = math.atan2(0.024 * rig.nose_w, 0.1)
        return [((t0, t1, -half, half), 2.5)]

    def _arch_out(self, p: Tensor) -> Tensor:
        c = p.new_tensor((0.0, self.rig.mouth_y, self.rig.lip_z - 0.04))
        d = p - c
        d[..., 1] = 0
        return d

    def _shade_static(self, g: Grid, label: int, sheen: float = 0.0) -> Cloud:
        n = grid_normals(g.rest, g.periodic_v, g.flip)
        return self._cloud(g, g.rest, n, label, sheen=sheen)

    def _cloud(self, g: Grid, pos: Tensor, n: Tensor, label: int, sheen: float = 0.0,
               extra: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> Cloud:
        """Flatten and shade one posed grid (plus optional extra samples: points, normals, albedo, ao)."""
        return self._shade_parts([self._flatten(g, pos, n, label, extra)], sheen)

    def _flatten(self, g: Grid, pos: Tensor, n: Tensor, label: int,
                 extra: tuple[Tensor, Tensor, Tensor, Tensor] | None = None) -> dict[str, Tensor | int | bool]:
        """The kept samples of a posed grid as flat arrays, not yet shaded."""
        keep = g.keep.reshape(-1) if g.keep is not None else None
        P, N, A = pos.reshape(-1, 3), n.reshape(-1, 3), g.albedo.reshape(-1, 3)
        occ = g.ao.reshape(-1) if g.ao is not None else torch.ones_like(P[:, 0])
        B = g.back_albedo.reshape(-1, 3) if g.back_albedo is not None else A
        if keep is not None:
            P, N, A, B, occ = P[keep], N[keep], A[keep], B[keep], occ[keep]
        if extra is not None:
            P, N, A, occ = (torch.cat([a, b]) for a, b in zip((P, N, A, occ), extra, strict=True))
            B = torch.cat([B, extra[2]])
        sheet = g.side == SIDE_SHEET
        two = torch.full((P.shape[0],), sheet, dtype=torch.bool, device=P.device)
        if label == LABELS["skin"] and not sheet:
            # skin around the mouth keeps its inside (dark) so that nothing shows through parted lips
            m = self._const((0.0, self.rig.mouth_y - 0.01, self.rig.lip_z - 0.03), P)
            two = ((P - m) / self._const((0.05, 0.045, 0.05), P)).norm(dim=-1) < 1
        return {"P": P, "N": N, "A": A, "B": B, "occ": occ, "label": label, "sheet": sheet, "two": two}

    def _shade_parts(self, parts_: list[dict], sheen: float = 0.0) -> Cloud:
        """Shade many flattened parts in one go (one pass over the lights instead of one per part)."""
        cat = {k: torch.cat([p[k] for p in parts_]) for k in ("P", "N", "A", "B", "occ", "two")}
        sizes = [p["P"].shape[0] for p in parts_]
        dev = cat["P"].device

        def per_point(values: list) -> Tensor:
            return torch.repeat_interleave(torch.tensor(values, device=dev), torch.tensor(sizes, device=dev))

        skin = per_point([p["label"] == LABELS["skin"] for p in parts_])
        wrap = (skin.to(cat["P"].dtype) * 0.35)[:, None]
        sh = torch.full_like(cat["occ"], sheen) if sheen > 0 else None
        front = shade(cat["A"], cat["N"], cat["occ"], self.lights, wrap=wrap, sheen=sh)
        back = shade(cat["B"], -cat["N"], cat["occ"] * 0.8, self.lights, wrap=wrap)
        sheet = per_point([p["sheet"] for p in parts_])
        back = torch.where(sheet[:, None], back, interior(back.shape[0], back))
        label = per_point([p["label"] for p in parts_]).long()
        return Cloud(cat["P"], cat["N"], front, back, label, cat["two"])

    def _const(self, v: tuple[float, ...], like: Tensor) -> Tensor:
        key = (v, like.device)
        if key not in self._consts:
            self._consts[key] = torch.tensor(v, dtype=like.dtype, device=like.device)
        return self._consts[key]

    def _hair_cloud(self, g: Grid) -> Cloud:
        """The hair grid and its refill samples, coloured and shaded (hair never moves with expressions)."""
        keep = g.keep
        u, ph, mask, n = g.extras["u"][keep], g.extras["ph"][keep], g.extras["mask"][keep], g.extras["normal"][keep]
        pos = g.rest[keep]
        ex, en = g.extras["extra"], g.extras["extra_normal"]
        pos = torch.cat([pos, ex[:, :3]])
        n = torch.cat([n, en])
        u, ph, mask = torch.cat([u, ex[:, 3]]), torch.cat([ph, ex[:, 4]]), torch.cat([mask, ex[:, 5]])
        col = self.hair.colours(u, ph, mask, n)
        _, ao = self.rmap.sample(u.clamp(max=THETA_MAX), ph)
        ao = (0.55 + 0.45 * ao) * (0.75 + 0.25 * mask)
        front = shade(col, n, ao, self.lights, sheen=torch.full_like(ao, 0.8))
        back = shade(col * 0.6, -n, ao * 0.7, self.lights)
        lab = torch.full((pos.shape[0],), LABELS["hair"], dtype=torch.int64, device=pos.device)
        # the inside of the hair shows only where it hangs free or thins out at its edges; elsewhere it is
        # culled like a closed surface (it would be hidden behind its own outside)
        two_sided = (mask < 0.985) | (u > self.hair.drop) if self.hair.long else mask < 0.985
        return Cloud(pos, n, front, back, lab, two_sided)

    # ----- posing --------------------------------------------------------------------------------------------
    def pose(self, expression: np.ndarray | Tensor) -> Cloud:
        """All samples for one ARKit-52 expression."""
        w = weights(expression)
        rig = self.rig
        flat: list[dict] = []  # posed parts, shaded together at the end
        # skin: deform the movable part, refill stretched cells
        for g, mv in zip(self.skins, self.movable, strict=True):
            pos = g.rest
            if w:
                pos = pos.clone()
                pos[mv] = face_deform(g.rest[mv], w, rig)
            n = grid_normals(pos, g.periodic_v, g.flip)
            extra = None
            P, (A, occ, N) = refine(g.rest, pos, self.h, lambda q: face_deform(q, w, rig),
                                    periodic_v=g.periodic_v, max_split=10, keep=g.keep,
                                    attrs=[g.albedo, g.ao[..., None], n])
            if P.shape[0]:
                N = N / N.norm(dim=-1, keepdim=True).clamp(min=1e-9)
                extra = (P, N, A, occ[:, 0])
            flat.append(self._flatten(g, pos, n, LABELS["skin"], extra=extra))
        # jaw-borne parts
        for part, label in self.jaw_parts:
            p = part.rest
            if part is self.tongue and w.get("tongueOut", 0.0) > 0:
                a = w["tongueOut"]
                reach = ((p[..., 2] - (self.tongue_front - 0.04)) / 0.04).clamp(0, 1)
                p = p + a * torch.stack([torch.zeros_like(reach), -0.006 * reach - 0.001,
                                         0.024 + 0.006 * reach], -1)
            p = apply_jaw(p, w, rig) if w else p
            flat.append(self._flatten(part, p, grid_normals(p, part.periodic_v, part.flip), label))
        # eyes and lids
        for side, sgn in (("Left", 1.0), ("Right", -1.0)):
            centre = self._const((sgn * rig.eye_x, rig.eye_y, rig.eye_z), self.eyeball.rest)
            yaw, pitch = gaze(w, side)
            eb = self.eyeball
            if yaw or pitch:
                R = gaze_matrix(yaw, pitch, self.device)
                p, n = eb.rest @ R.T + centre, self.eyeball_normals @ R.T
            else:
                p, n = eb.rest + centre, self.eyeball_normals
            flat.append(self._flatten(eb, p, n, LABELS["eye"]))
            shape = lid_shape(w, side, self.idn.eye_open_upper, self.idn.eye_open_lower)
            up_edge, lo_edge = parts.eye_opening(self.idn, self.lid_b, shape, sgn)
            radius = rig.eye_r + 0.0011
            for upper, edge in ((True, up_edge), (False, lo_edge)):
                lp = parts.lid_points(centre, radius, self.lid_b, self.lid_t, edge, upper)
                lg = Grid("lid", lp, self.lid_albedo[(side, upper)], ao=self.lid_ao)
                nn = (lp - centre) / radius  # the lids are spheres around the eye
                flat.append(self._flatten(lg, lp, nn, LABELS["skin"]))
        return Cloud.cat([self.static, self._shade_parts(flat)])


_CACHE: OrderedDict[tuple, HeadModel] = OrderedDict()
_CACHE_SIZE = 3


def get_model(idn: HeadIdentity, h: float, device: torch.device | str = "cpu") -> HeadModel:
    """The built head for (identity, spacing, device), reusing a recent one (building costs ~1 s on a CPU)."""
    key = (idn.key(), round(h, 7), str(torch.device(device)))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    model = HeadModel(idn, h, device)
    _CACHE[key] = model
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return model


def spacing_levels(h: float) -> float:
    """Round a spacing down to an eighth-of-an-octave level so nearby resolutions share a cached build."""
    return 2.0 ** (math.floor(math.log2(h) * 8) / 8)


__all__ = ["LABELS", "Cloud", "HeadModel", "get_model", "make_rig", "spacing_levels"]
