"""The rest shape of the skin: a signed distance function sculpted from smooth-blended primitives (skull, face
mass, jaw, chin, cheekbones, brow ridge, nose, lips, eye sockets), sampled as a star-shaped radius map.

Why an SDF: smooth blends give one seamless skin whose proportions are a few identity numbers. Why a radius map:
the rendering needs dense surface samples, and a star-shaped head is r(θ, φ) around a centre, found once per
identity by sphere tracing inward along rays on a fixed-resolution grid and then resampled (bicubic) at any
density — so the same identity has the same shape at every render resolution.

Parameter convention: θ is the polar angle from +y (0 = crown), φ the azimuth around y with φ = 0 toward the
face (+z) and φ > 0 toward the subject's left (+x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stages.synth.identity import HeadIdentity

CENTRE = (0.0, -0.012, -0.004)  # rays start here; inside every plausible head
THETA_MAX = math.radians(152.0)  # below this the neck takes over
_MAP_SIZE = (128, 256)  # (θ, φ) samples of the whole-head radius map (~2 mm apart)
_FACE_THETA = (math.radians(62.0), math.radians(142.0))  # the fine face map's window (~0.6 mm apart)
_FACE_PHI = math.radians(46.0)
_FACE_SIZE = (210, 230)


def ellipsoid(p: Tensor, c: tuple, r: tuple) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipsoid (Quilez's bound)."""
    q = p - p.new_tensor(c)
    rr = p.new_tensor(r)
    k0 = (q / rr).norm(dim=-1)
    k1 = (q / (rr * rr)).norm(dim=-1).clamp(min=1e-9)
    return k0 * (k0 - 1.0) / k1


def round_cone(p: Tensor, a: tuple, b: tuple, ra: float, rb: float) -> Tensor:
    """Distance to a capsule from a to b whose radius goes from ra to rb (adequate for small taper)."""
    pa = p - p.new_tensor(a)
    ba = p.new_tensor(b) - p.new_tensor(a)
    h = ((pa * ba).sum(-1) / (ba * ba).sum()).clamp(0, 1)
    return (pa - ba * h[..., None]).norm(dim=-1) - (ra + (rb - ra) * h)


def smin(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Polynomial smooth minimum: a union whose seam is rounded over about k metres."""
    h = (k - (a - b).abs()).clamp(min=0) / k
    return torch.minimum(a, b) - h * h * k * 0.25


def ssub(a: Tensor, b: Tensor, k: float) -> Tensor:
    """Smoothly subtract the shape b from the shape a."""
    return -smin(-a, b, k)


@dataclass(frozen=True)
class Anatomy:
    """Landmark numbers derived from an identity that several parts share (metres, rest pose)."""

    eye_y: float
    eye_x: float
    brow_y: float
    nose_tip: tuple[float, float, float]
    nose_root: tuple[float, float, float]
    mouth_y: float
    mouth_w: float
    chin_y: float
    jaw_hinge: tuple[float, float, float]


def anatomy(idn: HeadIdentity) -> Anatomy:
    fl = idn.face_length
    eye_y = idn.eye_height
    nl = idn.nose_length
    tip_y = eye_y - 0.040 * nl * fl
    tip_z = 0.087 + 0.026 * idn.nose_projection
    return Anatomy(
        eye_y=eye_y, eye_x=idn.eye_spacing, brow_y=eye_y + idn.brow_height,
        nose_tip=(0.0, tip_y, tip_z), nose_root=(0.0, eye_y + 0.004, 0.083),
        mouth_y=eye_y - 0.0655 * fl, mouth_w=idn.mouth_width,
        chin_y=eye_y - 0.112 * fl - idn.chin_length, jaw_hinge=(0.0, eye_y - 0.018, -0.004))


def head_sdf(p: Tensor, idn: HeadIdentity, an: Anatomy | None = None) -> Tensor:
    """Signed distance (metres, negative inside) of the skin at points p (..., 3)."""
    an = an or anatomy(idn)
    hw, hh, hd, fl = idn.head_width, idn.head_height, idn.head_depth, idn.face_length
    ey, my = an.eye_y, an.mouth_y
    x = p[..., 0:1]
    pm = torch.cat([x.abs(), p[..., 1:]], -1)  # mirror: features are built on the +x side
    # cranium: an ellipsoid and a wider, flatter parietal vault make the top rounder than an egg
    d = ellipsoid(p, (0, 0.026 * hh, -0.013 * hd), (0.074 * hw, 0.094 * hh, 0.098 * hd))
    d = smin(d, ellipsoid(p, (0, 0.05 * hh, -0.02 * hd), (0.075 * hw, 0.068 * hh, 0.086 * hd)), 0.02)
    d = smin(d, ellipsoid(p, (0, 0.004, -0.045 * hd), (0.066 * hw, 0.078 * hh, 0.062 * hd)), 0.02)
    d = smin(d, ellipsoid(p, (0, ey - 0.034 * fl, 0.024), (0.065 * hw, 0.064 * fl, 0.064)), 0.03)
    jw = idn.jaw_width
    d = smin(d, ellipsoid(p, (0, my - 0.008 * fl, 0.012), (0.06 * jw, 0.037 * fl, 0.064)), 0.022)
    # mandible angle: the jaw line from below the ear to the chin
    d = smin(d, round_cone(pm, (0.057 * jw, ey - 0.044, -0.014), (0.023 * idn.chin_width, an.chin_y + 0.012, 0.05),
                           0.012, 0.0125), 0.02)
    d = smin(d, ellipsoid(p, (0, an.chin_y + 0.019, 0.061 + idn.chin_forward),
                          (0.021 * idn.chin_width, 0.02, 0.022)), 0.016)
    cb = idn.cheekbone
    d = smin(d, ellipsoid(pm, (0.047 * hw, ey - 0.02, 0.047 + 0.004 * cb), (0.019, 0.013, 0.024)), 0.012 + 0.008 * cb)
    cf = idn.cheek_fullness
    d = smin(d, ellipsoid(pm, (0.038, my + 0.014, 0.054 + 0.006 * cf), (0.022, 0.022, 0.026)), 0.02)
    br = idn.brow_ridge
    d = smin(d, ellipsoid(p, (0, ey + 0.024, 0.064 + 0.005 * br), (0.056, 0.011 + 0.003 * br, 0.028)), 0.016)
    # eye sockets: a shallow hollow that puts the skin a little behind the eyeball's front
    d = ssub(d, ellipsoid(pm, (an.eye_x, ey + 0.001, 0.089), (0.017, 0.0125, 0.010)), 0.008)
    # nose: a tapered ridge from the root to the tip, a rounded tip and the alae (nostril wings)
    tip = an.nose_tip
    nw, nt = idn.nose_width, idn.nose_tip
    hump = idn.nose_hump * 0.002
    mid = (0.0, 0.55 * an.nose_root[1] + 0.45 * tip[1], 0.55 * an.nose_root[2] + 0.45 * tip[2] + hump)
    end = (0.0, tip[1] + 0.003, tip[2] - 0.006)
    nose = round_cone(p, an.nose_root, mid, 0.0056, 0.0066 * nw)
    nose = smin(nose, round_cone(p, mid, end, 0.0066 * nw, 0.0078 * nw), 0.006)
    nose = smin(nose, ellipsoid(p, (0.0, tip[1] - 0.0015, tip[2] - 0.0085),
                                (0.0088 * nt * nw, 0.0078 * nt, 0.0085 * nt)), 0.007)
    nose = smin(nose, ellipsoid(pm, (0.0118 * nw, tip[1] - 0.0048, tip[2] - 0.0158),
                                (0.0068 * nw, 0.0058, 0.0082)), 0.006)
    d = smin(d, nose, 0.009)
    # lips: gentle rolls a few millimetres proud of the face, the upper slightly ahead of the lower
    mw = an.mouth_w
    d = smin(d, ellipsoid(p, (0, my + 0.5 * idn.upper_lip, 0.0815), (mw * 0.96, idn.upper_lip * 0.72, 0.0115)),
             0.008)
    d = smin(d, ellipsoid(p, (0, my - 0.5 * idn.lower_lip, 0.0795), (mw * 0.84, idn.lower_lip * 0.62, 0.0115)),
             0.008)
    return d


def ray_dirs(theta: Tensor, phi: Tensor) -> Tensor:
    """Unit directions (…, 3) for polar angle θ from +y and azimuth φ (0 toward +z, positive toward +x)."""
    st = torch.sin(theta)
    return torch.stack([st * torch.sin(phi), torch.cos(theta), st * torch.cos(phi)], -1)


def trace_radius(dirs: Tensor, idn: HeadIdentity, iters: int = 40, tol: float = 2e-6) -> Tensor:
    """Distance from CENTRE to the outermost skin crossing along each direction (sphere tracing inward).

    Rays that have converged are dropped from the batch every few steps, so grazing rays (nose sides) get the
    iterations they need without every ray paying for them."""
    c = dirs.new_tensor(CENTRE)
    an = anatomy(idn)
    flat = dirs.reshape(-1, 3)
    r = torch.full((flat.shape[0],), 0.17, dtype=dirs.dtype, device=dirs.device)
    active = torch.arange(flat.shape[0], device=dirs.device)
    done = 0
    while done < iters and active.numel():
        dr, rr = flat[active], r[active]
        for _ in range(6):
            d = head_sdf(c + dr * rr[:, None], idn, an)
            rr = rr - 0.85 * d.clamp(min=-0.002)
        r[active] = rr
        done += 6
        active = active[d.abs() > tol]
    return r.reshape(dirs.shape[:-1])


class RadiusMap:
    """r(θ, φ) and ambient occlusion, sampled bicubically anywhere (periodic in φ): a coarse map of the whole
    skin plus a finer one over the face, where the nose and lips change steeply."""

    def __init__(self, idn: HeadIdentity, device: torch.device | str = "cpu", detail: float = 1.0):
        """`detail` scales the map resolutions (coarse renders need coarse maps: 0.25 is plenty at 64²)."""
        nt, np_ = (max(24, int(round(k * detail))) for k in _MAP_SIZE)
        th = torch.linspace(0, THETA_MAX, nt, dtype=torch.float32, device=device)
        ph = torch.linspace(-math.pi, math.pi, np_ + 1, dtype=torch.float32, device=device)[:-1]
        self.maps = _trace_maps(th, ph, idn, periodic=True)
        ft, fp = (max(24, int(round(k * detail))) for k in _FACE_SIZE)
        fth = torch.linspace(*_FACE_THETA, ft, dtype=torch.float32, device=device)
        fph = torch.linspace(-_FACE_PHI, _FACE_PHI, fp, dtype=torch.float32, device=device)
        self.face = _trace_maps(fth, fph, idn, periodic=False)
        self.nt, self.np = nt, np_

    def sample(self, theta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
        """(radius, ambient occlusion) at parameters (θ, φ) of any shape."""
        pad = 3
        m = torch.cat([self.maps[..., -pad:], self.maps, self.maps[..., :pad]], -1).to(theta.device)
        wph = torch.remainder(phi + math.pi, 2 * math.pi) - math.pi
        col = (wph + math.pi) / (2 * math.pi) * self.np + pad
        row = theta.clamp(0, THETA_MAX) / THETA_MAX * (self.nt - 1)
        out = _bicubic(m, col / (m.shape[-1] - 1) * 2 - 1, row / (self.nt - 1) * 2 - 1)
        # inside the face window the fine map takes over, blending in over a few degrees at its border
        t0, t1 = _FACE_THETA
        fx = wph / _FACE_PHI
        fy = (theta - t0) / (t1 - t0) * 2 - 1
        inside = torch.minimum(1 - fx.abs(), 1 - fy.abs()).clamp(min=0)
        w = (inside / 0.08).clamp(0, 1)
        sel = w > 0
        if bool(sel.any()):
            fine = _bicubic(self.face.to(theta.device), fx[sel], fy[sel])
            out[:, sel] = fine * w[sel] + out[:, sel] * (1 - w[sel])
        return out[0], out[1].clamp(0, 1)

    def theta_samples(self, spacing: float) -> Tensor:
        """Polar angles spaced about `spacing` metres apart along the surface, so that the skin lattice is
        uniform where the head is long and not wasteful where it is short (the nose ridge gets refilled)."""
        from stages.synth.grids import arc_samples

        r = self.maps[0]
        th = torch.linspace(0, THETA_MAX, self.nt, device=r.device)
        step = THETA_MAX / (self.nt - 1)
        seg = (((0.5 * (r[1:] + r[:-1])) * step) ** 2 + (r[1:] - r[:-1]) ** 2).sqrt()
        return arc_samples(th, torch.quantile(seg, 0.9, dim=1), spacing)

    def ring(self, lo: float, hi: float) -> Tensor:
        """Lengths of the map's azimuth steps around the skin, the longest over polar angles lo..hi."""
        th = torch.linspace(0, THETA_MAX, self.nt, device=self.maps.device)
        i0 = max(0, int(lo / THETA_MAX * (self.nt - 1)))
        i1 = min(self.nt, int(math.ceil(hi / THETA_MAX * (self.nt - 1))) + 1)
        ph = torch.linspace(-math.pi, math.pi, self.np + 1, device=th.device)[:-1]
        tt, pp = torch.meshgrid(th[i0:i1], ph, indexing="ij")
        p = tt.new_tensor(CENTRE) + ray_dirs(tt, pp) * self.maps[0, i0:i1, :, None]
        return (torch.roll(p, -1, 1) - p).norm(dim=-1).amax(0)

    def point(self, theta: Tensor, phi: Tensor) -> Tensor:
        """Surface points (…, 3) at parameters (θ, φ)."""
        r, _ = self.sample(theta, phi)
        return theta.new_tensor(CENTRE) + ray_dirs(theta, phi) * r[..., None]


def _trace_maps(th: Tensor, ph: Tensor, idn: HeadIdentity, periodic: bool) -> Tensor:
    """(2, len(th), len(ph)): radius and occlusion on a (θ, φ) lattice."""
    from stages.synth.grids import grid_normals

    tt, pp = torch.meshgrid(th, ph, indexing="ij")
    dirs = ray_dirs(tt, pp)
    r = trace_radius(dirs, idn)
    pts = dirs.new_tensor(CENTRE) + dirs * r[..., None]
    n = grid_normals(pts, periodic_v=periodic)
    if float((n * dirs).sum(-1).mean()) < 0:
        n = -n
    return torch.stack([r, occlusion(pts, n, idn)])


def _bicubic(maps: Tensor, gx: Tensor, gy: Tensor) -> Tensor:
    """Sample (C, H, W) maps at normalised coordinates in [-1, 1] (corners at the first/last samples) with
    Catmull-Rom interpolation → (C, *gx.shape).

    Not F.grid_sample's bicubic: its kernel (a = -0.75) does not reproduce a linear ramp, and its ripples show
    up as wobbly normals on a smooth scalp; Catmull-Rom (a = -0.5) is exact for quadratics."""
    C, H, W = maps.shape
    x = ((gx.reshape(-1) + 1) * 0.5 * (W - 1)).to(maps.dtype)
    y = ((gy.reshape(-1) + 1) * 0.5 * (H - 1)).to(maps.dtype)
    x0, y0 = x.floor(), y.floor()

    def weights(t: Tensor) -> Tensor:
        t2, t3 = t * t, t * t * t
        return 0.5 * torch.stack([-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], -1)

    wx, wy = weights(x - x0), weights(y - y0)  # (N, 4)
    off = torch.arange(-1, 3, device=maps.device)
    xi = (x0.long()[:, None] + off).clamp(0, W - 1)  # (N, 4)
    yi = (y0.long()[:, None] + off).clamp(0, H - 1)
    flat = maps.reshape(C, H * W)
    out = torch.zeros(C, x.shape[0], dtype=maps.dtype, device=maps.device)
    for a in range(4):
        row = flat[:, yi[:, a:a + 1] * W + xi]  # (C, N, 4)
        out += wy[:, a] * (row * wx).sum(-1)
    return out.reshape(C, *gx.shape)


def occlusion(p: Tensor, n: Tensor, idn: HeadIdentity) -> Tensor:
    """Ambient occlusion from the SDF: how much skin lies within a few millimetres above each point."""
    an = anatomy(idn)
    occ = torch.zeros_like(p[..., 0])
    for delta, w in ((0.003, 0.45), (0.007, 0.3), (0.014, 0.2), (0.025, 0.12)):
        d = head_sdf(p + n * delta, idn, an)
        occ = occ + w * ((delta - d) / delta).clamp(min=0)
    return (1 - 0.7 * occ).clamp(0.25, 1.0)
