"""Painted detail on the skin: skin tone variation, lips, brows, nostrils, beard, freckles, and the hair
coverage mask of the scalp. Everything is a function of the rest position (and the skull parameters θ, φ), so it
moves with the skin when an expression deforms it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stages.synth.identity import HeadIdentity
from stages.synth.noise import LatticeNoise, seeded
from stages.synth.rig import Rig
from stages.synth.shape import THETA_MAX


def smoothstep(e0: float | Tensor, e1: float | Tensor, x: Tensor) -> Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def rgb(p: Tensor, c) -> Tensor:
    return p.new_tensor(tuple(c))


@dataclass
class Textures:
    """The noise layers of one identity (drawn from its texture seed)."""

    mottle: LatticeNoise
    fine: LatticeNoise
    freckle: LatticeNoise
    strands: LatticeNoise
    curls: LatticeNoise
    brow: LatticeNoise
    beard: LatticeNoise
    edge: LatticeNoise

    @staticmethod
    def of(idn: HeadIdentity) -> Textures:
        s = idn.texture_seed
        return Textures(
            mottle=LatticeNoise((14, 28), seeded(s + 1), periodic_v=True, octaves=3),
            fine=LatticeNoise((90, 180), seeded(s + 2), periodic_v=True, octaves=1),
            freckle=LatticeNoise((150, 300), seeded(s + 3), periodic_v=True),
            strands=LatticeNoise((12, 300), seeded(s + 4), periodic_v=True, octaves=2, gain=0.7),
            curls=LatticeNoise((110, 220), seeded(s + 5), periodic_v=True, octaves=2, gain=0.7),
            brow=LatticeNoise((40, 160), seeded(s + 6)),
            beard=LatticeNoise((80, 160), seeded(s + 7), periodic_v=True, octaves=2),
            edge=LatticeNoise((4, 48), seeded(s + 8), periodic_v=True),
        )


def _uv(th: Tensor, ph: Tensor) -> tuple[Tensor, Tensor]:
    return th / THETA_MAX, (ph + math.pi) / (2 * math.pi)


def _interp(knots_x: list[float], knots_y: list[float], x: Tensor) -> Tensor:
    """Piecewise-linear interpolation then a light smoothing of the corners (smoothstep per segment)."""
    kx = x.new_tensor(knots_x)
    ky = torch.stack([k if torch.is_tensor(k) else x.new_tensor(float(k)) for k in knots_y])
    i = torch.searchsorted(kx, x.contiguous().clamp(kx[0], kx[-1]), right=True).clamp(1, len(knots_x) - 1)
    x0, x1, y0, y1 = kx[i - 1], kx[i], ky[i - 1], ky[i]
    t = ((x - x0) / (x1 - x0)).clamp(0, 1)
    t = t * t * (3 - 2 * t)
    return y0 + (y1 - y0) * t


def hair_mask(p: Tensor, th: Tensor, ph: Tensor, idn: HeadIdentity, rig: Rig, tex: Textures) -> Tensor:
    """Hair density over the scalp in [0, 1]: a hairline that runs over the forehead, recedes at the temples,
    drops to sideburns, arcs over the ears and ends at the nape."""
    if idn.hair_style == "bald":
        return torch.zeros_like(th)
    u, v = _uv(th, ph)
    aphi = ph.abs() * 180 / math.pi
    ey, rec = rig.eye_y, idn.recession
    hl = idn.hairline - idn.fringe * 0.032
    x = p[..., 0].abs()
    front = hl + rec * 0.02 * (x / 0.045).clamp(0, 1.5) ** 2
    knots = [0.0, 40.0, 60.0, 70.0, 76.0, 86.0, 93.0, 108.0, 125.0, 150.0, 180.0]
    long_side = 1.0 if idn.hair_style in ("long", "volume") else 0.0
    burn = ey - 0.012 + 0.012 * rec  # the bottom of the sideburn
    vals = [0.0, 0.0, hl - 0.012 - 0.028 * rec, ey + 0.012, burn, burn - 0.002, ey + 0.022 - 0.03 * long_side,
            ey + 0.02 - 0.03 * long_side, ey - 0.008, -0.052, -0.068]
    yb = _interp(knots, vals, aphi)
    # the forehead curve (with temple recession) blends into the knots toward the sides
    t = smoothstep(25.0, 55.0, aphi)
    yb = front * (1 - t) + yb * t
    yb = yb + 0.0035 * tex.edge(u, v)
    y = p[..., 1]
    m = smoothstep(yb - 0.0015, yb + 0.006, y)
    if idn.crown_bald > 0:
        m = m * (1 - idn.crown_bald * smoothstep(0.75, 0.45, th))
    return m


def hair_albedo(th: Tensor, ph: Tensor, idn: HeadIdentity, tex: Textures, along: Tensor | None = None) -> Tensor:
    """Strand-textured hair colour: fine streaks across the strand direction (straight) or blobs (curly)."""
    u, v = _uv(th, ph) if along is None else (along, (ph + math.pi) / (2 * math.pi))
    streak = tex.strands(u, v)
    curl = tex.curls(u, v)
    clump = tex.mottle(u, v)
    s = (1 - 0.6 * idn.curl) * streak + 0.6 * idn.curl * curl
    base = th.new_tensor(idn.hair_color)
    light = (0.8 + 0.32 * s + 0.12 * clump).clamp(0.35, 1.3)
    # lighter hair shows more contrast, dark hair less
    return (base * light[..., None]).clamp(0, 1)


def vermilion(p: Tensor, rig: Rig, idn: HeadIdentity) -> tuple[Tensor, Tensor]:
    """Masks of the upper and lower lip's red part (with a cupid's bow on the upper one)."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    mw = rig.mouth_w
    s = (x.abs() / mw).clamp(max=1.0)
    ys = rig.slit_y(x)
    hu = idn.upper_lip * 0.95 * (1 - s**2.2).clamp(min=0) ** 0.5
    hu = hu * (1 - 0.2 * torch.exp(-(x / 0.0032) ** 2)) + 0.12 * idn.upper_lip * torch.exp(
        -((x.abs() - 0.0055) / 0.003) ** 2) * (1 - s)
    hl = idn.lower_lip * 0.8 * (1 - s**2).clamp(min=0) ** 0.6
    front = smoothstep(rig.lip_z - 0.016, rig.lip_z - 0.008, z)
    soft = 0.0005
    up = smoothstep(ys - soft, ys, y) * smoothstep(ys + hu + soft, ys + hu - soft, y) * front
    lo = smoothstep(ys + soft, ys, y) * smoothstep(ys - hl - soft, ys - hl + soft, y) * front
    return up, lo


def brow_mask(p: Tensor, rig: Rig, idn: HeadIdentity, tex: Textures) -> Tensor:
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    xa = x.abs()
    x_in, x_out = rig.eye_x - 0.019, rig.eye_x + 0.025
    s = (xa - x_in) / (x_out - x_in)
    sc = s.clamp(0, 1)
    yc = rig.brow_y + idn.brow_arch * torch.sin(math.pi * sc**0.8) - 0.003 * sc**2
    half = 0.5 * idn.brow_thickness * (1.2 - 0.8 * sc)
    band = smoothstep(half + 0.0009, half - 0.0005, (y - yc).abs())
    ends = smoothstep(-0.06, 0.06, s) * smoothstep(1.06, 0.9, s)
    front = smoothstep(rig.brow_z - 0.03, rig.brow_z - 0.015, z)
    # hairs: streaks slanting up-and-out near the inner end, flat outward elsewhere
    # hairs run outward (slanting up near the inner end): streaks vary fast across them, slowly along them
    across = (y - yc - 0.25 * (1 - sc) * (xa - x_in)) / 0.02 + 0.5
    streak = tex.brow(across.clamp(0, 1), xa / 0.64)
    density = idn.brow_density * (0.8 + 0.35 * streak).clamp(0, 1)
    return (band * ends * front * density).clamp(0, 1)


def beard_mask(p: Tensor, ph: Tensor, rig: Rig, idn: HeadIdentity, tex: Textures,
               up_lip: Tensor, lo_lip: Tensor) -> Tensor:
    """Where a beard grows: jaw, chin, under the chin, cheeks below a diagonal line, and the moustache."""
    if idn.beard <= 0:
        return torch.zeros_like(ph)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    xa = x.abs()
    my = rig.mouth_y
    top = my + 0.008 + (rig.eye_y - 0.024 - my) * ((xa - 0.028) / 0.042).clamp(0, 1)
    jaw = smoothstep(top + 0.003, top - 0.004, y) * smoothstep(-0.03, 0.0, z)
    # moustache: between the nose and the upper lip
    tip_y = rig.nose_tip[1]
    ys = rig.slit_y(x)
    must = (smoothstep(tip_y - 0.007, tip_y - 0.011, y) * smoothstep(ys + 0.002, ys + 0.006, y)
            * smoothstep(rig.mouth_w + 0.008, rig.mouth_w - 0.002, xa) * idn.moustache)
    # a clean band just under the lower lip thins out
    under = 1 - 0.6 * smoothstep(0.006, 0.0, (y - (ys - 0.012)).abs()) * smoothstep(0.012, 0.004, xa)
    m = torch.maximum(jaw * under, must) * (1 - up_lip) * (1 - lo_lip)
    u = (y + 0.2) * 2.0
    v = (ph + math.pi) / (2 * math.pi)
    grain = tex.beard(u.clamp(0, 1), v)
    # ragged edges, dense inside
    edge = smoothstep(0.0, 0.6, m)
    m = m * (1 - 0.5 * (1 - edge) * (0.5 + 0.5 * grain)).clamp(0, 1)
    return (m * idn.beard).clamp(0, 1)


def skin_albedo(p: Tensor, th: Tensor, ph: Tensor, n: Tensor, idn: HeadIdentity, rig: Rig,
                tex: Textures) -> tuple[Tensor, Tensor]:
    """Albedo (…, 3) of the face and scalp skin, and the beard mask (for its displacement)."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    u, v = _uv(th, ph)
    base = rgb(p, idn.skin_color)
    mot = tex.mottle(u, v)
    fine = tex.fine(u, v)
    col = base * (1 + 0.05 * mot[..., None] + 0.015 * fine[..., None])
    col = col * (1 + p.new_tensor((0.015, -0.01, -0.015)) * mot[..., None])
    # warm flush on the cheeks, nose and ears; slightly darker around the eyes
    tone = idn.skin_tone
    flush = torch.zeros_like(x)
    for sgn in (1.0, -1.0):
        flush = flush + torch.exp(-(((x - sgn * 0.042) / 0.02) ** 2 + ((y - rig.eye_y + 0.032) / 0.018) ** 2))
        dark = torch.exp(-(((x - sgn * rig.eye_x) / 0.013) ** 2 + ((y - rig.eye_y + 0.012) / 0.006) ** 2))
        col = col * (1 - (0.06 + 0.08 * tone) * dark[..., None] * (z > 0).float()[..., None])
    tip = rig.nose_tip
    flush = flush + 0.6 * torch.exp(-(((x) / 0.012) ** 2 + ((y - tip[1]) / 0.01) ** 2 + ((z - tip[2]) / 0.01) ** 2))
    flush = flush * (z > 0.02).float() * idn.redness * (1 - 0.7 * tone)
    col = col * (1 - 0.12 * flush[..., None] * p.new_tensor((0.0, 1.0, 0.9)))
    # freckles on the cheeks and nose
    if idn.freckles > 0:
        f = smoothstep(0.35, 0.65, tex.freckle(u, v))
        region = torch.exp(-((x.abs() - 0.03) / 0.035) ** 2 - ((y - rig.eye_y + 0.025) / 0.02) ** 2) * (z > 0.03)
        col = col * (1 - 0.25 * idn.freckles * (f * region)[..., None] * p.new_tensor((0.6, 0.9, 1.0)))
    # nostrils: dark openings on the underside of the nose
    for sgn in (1.0, -1.0):
        q = ((x - sgn * 0.0062 * rig.nose_w) / 0.0034) ** 2 + ((y - tip[1] + 0.0085) / 0.003) ** 2 + (
            (z - tip[2] + 0.0095) / 0.0048) ** 2
        nos = torch.exp(-(q**2)) * smoothstep(-0.1, -0.5, n[..., 1])
        col = col * (1 - 0.85 * nos[..., None])
    # lips
    up, lo = vermilion(p, rig, idn)
    lip = rgb(p, idn.lip_color) * (1 + 0.03 * fine[..., None])
    lipm = (up + lo).clamp(0, 1)
    col = col * (1 - lipm[..., None]) + lip * torch.where(lo > up, 1.06, 1.0)[..., None] * lipm[..., None]
    seam = smoothstep(0.0007, 0.0, (y - rig.slit_y(x)).abs()) * smoothstep(rig.mouth_w + 0.001, rig.mouth_w - 0.002,
                                                                            x.abs()) * (z > rig.lip_z - 0.012)
    col = col * (1 - 0.45 * seam[..., None])
    # brows
    bm = brow_mask(p, rig, idn, tex)
    col = col * (1 - 0.92 * bm[..., None]) + rgb(p, idn.brow_color) * 0.92 * bm[..., None]
    # beard (stubble darkens, a full beard replaces the skin colour)
    beard = beard_mask(p, ph, rig, idn, tex, up, lo)
    if idn.beard > 0:
        streak = 0.6 * tex.strands(u, v) + 0.4 * tex.fine(u, v)
        bc = rgb(p, idn.beard_color) * (0.85 + 0.3 * streak[..., None]).clamp(0.4, 1.3)
        cover = beard * (0.55 + 0.45 * min(1.0, idn.beard_length / 0.003))
        col = col * (1 - cover[..., None]) + bc * cover[..., None]
    return col.clamp(0, 1), beard
