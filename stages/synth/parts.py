"""Builders for the head's separate surfaces: eyeballs, eyelids, teeth, mouth interior, tongue, ears, neck with
clothing, the hair shell and long hair. Each returns a `Grid` sampled at most `h` metres apart."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stages.synth.grids import SIDE_SHEET, Grid, count, lattice
from stages.synth.identity import HeadIdentity
from stages.synth.noise import LatticeNoise, seeded
from stages.synth.rig import LidShape, Rig
from stages.synth.shape import head_sdf
from stages.synth.skin import smoothstep

LID_TOP_DEG = 78.0  # how far the lid shells reach into the socket (hidden inside the skin)
LID_SIDE_DEG = 82.0


def trace_ray(idn: HeadIdentity, origin: tuple[float, float, float], direction: tuple[float, float, float],
              iters: int = 60) -> float:
    """Distance along a ray to the skin (sphere tracing), for placing parts relative to the surface."""
    o = torch.tensor(origin, dtype=torch.float64)
    d = torch.tensor(direction, dtype=torch.float64)
    d = d / d.norm()
    t = 0.0
    for _ in range(iters):
        s = float(head_sdf((o + t * d).float(), idn))
        t += 0.8 * s
        if abs(s) < 1e-6:
            break
    return t


# ----- eyes ---------------------------------------------------------------------------------------------------
def eyeball(idn: HeadIdentity, h: float, device) -> Grid:
    """The front of an eyeball in its own frame (centre at the origin, looking along +z): sclera, iris with
    radial fibres and a darker rim, pupil."""
    R = idn.eye_radius
    psi_max = math.radians(88.0)
    nu = count(R * psi_max, h * 0.7, lo=12)
    nv = count(2 * math.pi * R, h * 0.8, lo=24)
    psi, om = lattice(0.0, psi_max, nu, -math.pi, math.pi, nv, device, periodic_v=True)
    pos = torch.stack([torch.sin(psi) * torch.cos(om), torch.sin(psi) * torch.sin(om), torch.cos(psi)], -1) * R
    deg = psi * 180 / math.pi
    ir, pr = idn.iris_size, idn.iris_size * 0.4
    fibres = LatticeNoise((6, 90), seeded(idn.texture_seed + 20), periodic_v=True, octaves=2)
    f = fibres(deg / 90.0, (om + math.pi) / (2 * math.pi))
    iris = pos.new_tensor(idn.iris_color) * (0.85 + 0.35 * f[..., None])
    ring = smoothstep(ir * 0.75, ir, deg)  # darker limbal ring
    iris = iris * (1 - 0.55 * ring[..., None]) * (1 + 0.25 * smoothstep(pr * 1.6, pr, deg)[..., None])
    sclera = pos.new_tensor((0.9, 0.87, 0.83)) * (1 - 0.08 * smoothstep(40.0, 80.0, deg)[..., None])
    sclera = sclera * (1 - 0.06 * smoothstep(50.0, 85.0, deg) * (0.5 + 0.5 * f))[..., None] * pos.new_tensor(
        (1.0, 0.93, 0.93))
    pupil = pos.new_tensor((0.02, 0.02, 0.025))
    a_iris = smoothstep(ir + 0.6, ir - 0.6, deg)[..., None]
    a_pupil = smoothstep(pr + 0.5, pr - 0.5, deg)[..., None]
    col = sclera * (1 - a_iris) + iris * a_iris
    col = col * (1 - a_pupil) + pupil * a_pupil
    return Grid("eyeball", pos, col.clamp(0, 1), periodic_v=True, ao=1 - 0.3 * smoothstep(55.0, 88.0, deg))


def lid_lattice(idn: HeadIdentity, h: float, device) -> tuple[Tensor, Tensor]:
    """Fixed lid parameters (β azimuth in degrees, t from the lid edge 0 to the socket 1)."""
    R = idn.eye_radius
    nb = count(R * math.radians(2 * LID_SIDE_DEG), h * 0.75, lo=16)
    nt = count(R * math.radians(LID_TOP_DEG + 30), h * 0.75, lo=10)
    t, b = lattice(0.0, 1.0, nt, -LID_SIDE_DEG, LID_SIDE_DEG, nb, device)
    return b, t


def lid_albedo(idn: HeadIdentity, b: Tensor, t: Tensor, upper: bool, side: float) -> Tensor:
    """Lid colour: skin, a dark lash line at the edge (thicker toward the outer corner), a crease."""
    skin = b.new_tensor(idn.skin_color) * (0.93 if upper else 0.97)
    skin = skin * b.new_tensor((1.0, 0.96, 0.96))
    lateral = (b * side / LID_SIDE_DEG).clamp(-1, 1)
    if upper:
        lash = smoothstep(0.05 + 0.03 * lateral, 0.02, t) * smoothstep(LID_SIDE_DEG * 0.72, LID_SIDE_DEG * 0.5,
                                                                    b.abs())
        crease = torch.exp(-((t - 0.3) / 0.06) ** 2) * smoothstep(60.0, 30.0, b.abs())
        col = skin * (1 - 0.16 * crease[..., None])
        dark = b.new_tensor((0.05, 0.04, 0.035))
        return col * (1 - 0.92 * lash[..., None]) + dark * 0.92 * lash[..., None]
    lash = smoothstep(0.035, 0.01, t) * smoothstep(LID_SIDE_DEG * 0.7, LID_SIDE_DEG * 0.45, b.abs())
    wet = smoothstep(0.015, 0.0, t)
    col = skin * (1 - 0.35 * lash[..., None])
    return col * (1 - 0.3 * wet[..., None]) + b.new_tensor((0.75, 0.45, 0.45)) * 0.3 * wet[..., None]


def eye_opening(idn: HeadIdentity, b: Tensor, shape: LidShape, side: float) -> tuple[Tensor, Tensor]:
    """Upper and lower lid edge elevations (degrees) along β: an almond that closes at the corners."""
    w = idn.eye_width
    c = torch.cos(0.5 * math.pi * (b / w).clamp(-1, 1)).clamp(min=0) ** 0.7
    # the upper lid's peak sits a little toward the nose, the lower's toward the temple
    c_up = c * (1 + 0.08 * torch.sin(math.pi * (b * side / w).clamp(-1, 1)) * -1)
    tilt = idn.eye_tilt * b * side
    return shape.upper * c_up + tilt, shape.lower * c + tilt


def lid_points(centre: Tensor, radius: float, b: Tensor, t: Tensor, edge: Tensor, upper: bool) -> Tensor:
    """Lid shell samples on a sphere around the eye from the edge curve to the socket."""
    end = LID_TOP_DEG if upper else -LID_TOP_DEG
    alpha = torch.deg2rad(edge + t * (end - edge))
    beta = torch.deg2rad(b)
    d = torch.stack([torch.cos(alpha) * torch.sin(beta), torch.sin(alpha), torch.cos(alpha) * torch.cos(beta)], -1)
    return centre + radius * d


# ----- mouth --------------------------------------------------------------------------------------------------
TOOTH_EDGES = (0.0, 0.0043, 0.0076, 0.0113, 0.0148, 0.0183, 0.022, 0.026)  # arch length of tooth boundaries


def teeth(idn: HeadIdentity, rig: Rig, h: float, device, upper: bool) -> Grid:
    """A row of teeth on a parabolic arch behind the lips, with gaps, rounded tips and gums."""
    half = 0.026
    depth = 0.034
    zf = rig.lip_z - 0.0085 - (0.0 if upper else 0.0018)
    height = 0.011
    ns = count(0.11, h * 0.8, lo=16)  # the arch is ~10 cm long along its curve
    nh = count(height, h * 0.8, lo=6)
    hh, s = lattice(0.0, 1.0, nh, -1.0, 1.0, ns, device)
    x = s * half
    z = zf - depth * s * s
    ys = rig.mouth_y + (-0.0012 if upper else 0.0012)
    y = ys + (hh * height if upper else -hh * height)
    pos = torch.stack([x, y, z], -1)
    # arch length from the centre → tooth index and position within the tooth
    arc = (s.abs() * half) * (1 + 0.5 * (2 * depth * s.abs() / half) ** 2) ** 0.5
    edges = pos.new_tensor(TOOTH_EDGES)
    k = torch.searchsorted(edges, arc.contiguous(), right=True).clamp(1, len(TOOTH_EDGES) - 1)
    e0, e1 = edges[k - 1], edges[k]
    f = ((arc - e0) / (e1 - e0)).clamp(0, 1)
    gap = torch.exp(-((torch.minimum(f, 1 - f)) / 0.06) ** 2)
    tip = hh < 0.02 + 0.12 * (2 * f - 1) ** 4
    col = pos.new_tensor((0.93, 0.9, 0.82)) * (1 - 0.3 * gap[..., None]) * (1 - 0.35 * (s.abs() ** 1.5)[..., None])
    gum_line = 0.78 - 0.12 * (1 - (2 * f - 1) ** 2)
    gum = smoothstep(gum_line - 0.03, gum_line + 0.03, hh)
    col = col * (1 - gum[..., None]) + pos.new_tensor((0.72, 0.36, 0.36)) * gum[..., None]
    col = torch.where(tip[..., None], pos.new_tensor((0.08, 0.03, 0.03)), col)
    ao = 1 - 0.5 * s.abs()
    return Grid("teeth_upper" if upper else "teeth_lower", pos, col, ao=ao, side=SIDE_SHEET, flip=upper,
                back_albedo=col * 0.6)


def mouth_bowl(idn: HeadIdentity, rig: Rig, h: float, device) -> Grid:
    """The inside of the mouth: a dark, reddish bowl behind the teeth (both halves; the lower follows the jaw)."""
    c = (0.0, rig.mouth_y, rig.lip_z - 0.026)
    r = (0.031, 0.024, 0.026)
    nu = count(math.pi * 0.03, h * 0.9, lo=12)
    nv = count(2 * math.pi * 0.032, h * 0.9, lo=24)
    th, ph = lattice(0.0, math.pi, nu, -math.pi, math.pi, nv, device, periodic_v=True)
    d = torch.stack([torch.sin(th) * torch.sin(ph), torch.cos(th), torch.sin(th) * torch.cos(ph)], -1)
    pos = d * d.new_tensor(r) + d.new_tensor(c)
    depth = ((rig.lip_z - 0.006 - pos[..., 2]) / 0.05).clamp(0, 1)
    col = pos.new_tensor((0.42, 0.12, 0.12)) * (1 - 0.8 * depth[..., None])
    keep = (pos[..., 2] < rig.lip_z - 0.003) & (head_sdf(pos, idn) < -0.004)
    return Grid("mouth", pos, col, ao=1 - 0.6 * depth, keep=keep, periodic_v=True, side=SIDE_SHEET,
                back_albedo=col, extras={"lower": (pos[..., 1] < rig.mouth_y).float()})


def tongue(idn: HeadIdentity, rig: Rig, h: float, device) -> Grid:
    """The tongue's upper surface resting on the floor of the mouth."""
    zc = rig.lip_z - 0.027
    ax, az = 0.018, 0.022
    nr = count(az, h * 0.8, lo=8)
    nw = count(2 * math.pi * ax, h * 0.8, lo=24)
    rho, om = lattice(0.0, 1.0, nr, -math.pi, math.pi, nw, device, periodic_v=True)
    x = rho * ax * torch.cos(om)
    z = zc + rho * az * torch.sin(om)
    y = rig.mouth_y - 0.0085 + 0.0045 * (1 - rho**2) - 0.0012 * torch.exp(-(x / 0.003) ** 2) * (1 - rho)
    pos = torch.stack([x, y, z], -1)
    col = pos.new_tensor((0.74, 0.36, 0.36)) * (1 - 0.25 * torch.exp(-(x / 0.003) ** 2))[..., None]
    ao = 1 - 0.5 * ((zc + az - z) / (2 * az)).clamp(0, 1)
    return Grid("tongue", pos, col, ao=ao, periodic_v=True, side=SIDE_SHEET, flip=True, back_albedo=col * 0.7)


# ----- ears ---------------------------------------------------------------------------------------------------
def ear(idn: HeadIdentity, rig: Rig, h: float, device, side: float) -> Grid:
    """An outer ear: an oval sheet with a raised rim (helix), an anti-helix ridge, a hollow (concha) and a
    lobe, attached to the side of the head and turned outward by the protrusion angle."""
    size = idn.ear_size
    ha, wb = 0.031 * size, 0.03 * size
    y0 = rig.eye_y - 0.013 + idn.ear_height
    z0 = -0.006
    x_skin = 0.2 - trace_ray(idn, (side * 0.2, y0, z0), (-side, 0.0, 0.0))
    na = count(2 * ha * 1.6, h * 0.8, lo=12)
    nb = count(wb * 1.6, h * 0.8, lo=8)
    a, bb = lattice(-1.0, 1.0, na, 0.0, 1.0, nb, device)
    width = (1 - a**2).clamp(min=0) ** 0.5 * (0.82 + 0.2 * a) * torch.where(a < -0.55, 0.8 + 0.2 * (a + 1) / 0.45,
                                                                           torch.ones_like(a))
    b = bb * width
    rim = smoothstep(0.72, 0.93, bb) * (1 - smoothstep(0.97, 1.0, bb) * 0.5)
    anti = torch.exp(-((bb - 0.55) / 0.12) ** 2) * smoothstep(-0.6, -0.1, a) * 0.5
    concha = torch.exp(-((a + 0.12) / 0.32) ** 2 - ((bb - 0.3) / 0.22) ** 2)
    lobe = smoothstep(-0.55, -0.85, a)
    out = (0.0042 * rim + 0.0022 * anti - 0.0045 * concha) * (1 - lobe) + 0.0015 * lobe
    ang = math.radians(idn.ear_protrusion)
    tilt = math.radians(14.0)
    # local axes: up (tilted back), back-and-out along the sheet, normal outward
    up = torch.tensor([0.0, math.cos(tilt), -math.sin(tilt)], device=device)
    back = torch.tensor([side * math.sin(ang), 0.0, -math.cos(ang)], device=device)
    back = back - (back @ up) * up
    back = back / back.norm()
    normal = torch.cross(up, back, dim=0)
    normal = normal if float(normal[0]) * side > 0 else -normal  # pointing away from the head
    origin = torch.tensor([side * (x_skin - 0.004), y0, z0 + 0.004], device=device)
    pos = origin + (a * ha)[..., None] * up + (b * wb * 1.05)[..., None] * back + out[..., None] * normal
    skin = pos.new_tensor(idn.skin_color) * pos.new_tensor((1.0, 0.93, 0.92))
    col = skin * (1 - 0.25 * concha[..., None] * (1 - lobe[..., None]))
    ao = 1 - 0.45 * concha * (1 - lobe)
    keep = head_sdf(pos, idn) > -0.0005
    return Grid("ear", pos, col, ao=ao, keep=keep, side=SIDE_SHEET,
                back_albedo=(skin * 0.95).expand_as(col).clone())


# ----- neck and clothes ---------------------------------------------------------------------------------------
def neck(idn: HeadIdentity, rig: Rig, h: float, device) -> Grid:
    """The neck as an elliptic cylinder, with a collar and sloping shoulders of clothing at the bottom."""
    nw = idn.neck_width
    rx, rz = 0.057 * nw, 0.053 * nw
    y_top, y_bot = rig.eye_y - 0.03, -0.27
    nu = count(y_top - y_bot, h, lo=16)
    nv = count(2 * math.pi * 0.052, h, lo=32)
    y, ph = lattice(y_top, y_bot, nu, -math.pi, math.pi, nv, device, periodic_v=True)
    collar = idn.collar_height
    cloth = smoothstep(collar + 0.002, collar - 0.002, y)
    shoulder = (collar - 0.015 - y).clamp(min=0)
    x = (rx + 0.004 * cloth + 0.9 * shoulder) * torch.sin(ph)
    z = -0.012 + (rz + 0.004 * cloth + 0.25 * shoulder) * torch.cos(ph) + 0.015 * (rig.eye_y - 0.03 - y)
    pos = torch.stack([x, y, z], -1)
    fabric = LatticeNoise((40, 80), seeded(idn.texture_seed + 30), periodic_v=True)
    f = fabric((y_top - y) / (y_top - y_bot), (ph + math.pi) / (2 * math.pi))
    skin = pos.new_tensor(idn.skin_color) * 0.97
    shirt = pos.new_tensor(idn.shirt_color) * (1 + 0.06 * f[..., None])
    col = skin * (1 - cloth[..., None]) + shirt * cloth[..., None]
    # shade under the jaw
    ao = 1 - 0.45 * smoothstep(rig.eye_y - 0.09, rig.eye_y - 0.05, y) * (0.5 + 0.5 * torch.cos(ph).clamp(min=0))
    keep = head_sdf(pos, idn) > -0.0008
    return Grid("neck", pos, col.clamp(0, 1), ao=ao, keep=keep, periodic_v=True,
                extras={"cloth": cloth})
