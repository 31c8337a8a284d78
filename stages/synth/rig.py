"""The expression axis: how each ARKit-52 channel moves the skin, the jaw, the eyes and the lids.

Every channel is a smooth, anatomically placed displacement field over *rest* positions (so a sample's motion
depends only on where it sits on the neutral face), plus a rigid jaw that rotates about a hinge in front of the
ears. The lips part along a hard seam: samples below the lip line follow the jaw, samples above it do not, so
opening the jaw tears the skin exactly at the mouth and reveals the teeth and the mouth interior behind it.
"Left" channels act on the subject's left, which is +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stages.expressions import ARKIT_INDEX

JAW_OPEN_RAD = 0.30  # jawOpen = 1 rotates the jaw by ~17°
JAW_SIDE_M = 0.008
JAW_FORWARD_M = 0.007


@dataclass
class Rig:
    """Rest-pose landmark numbers the deformations are anchored to (metres, world frame)."""

    mouth_y: float
    mouth_w: float
    lip_z: float
    hinge: tuple[float, float, float]
    eye_x: float
    eye_y: float
    eye_z: float  # eyeball centre z
    eye_r: float
    brow_y: float
    brow_z: float
    nose_tip: tuple[float, float, float]
    nose_w: float
    cheek_z: float

    def slit_y(self, x: Tensor) -> Tensor:
        """The lip line: where the upper and lower lips meet (curving down a little toward the corners)."""
        return self.mouth_y - 0.0018 * (x / self.mouth_w).clamp(-1.5, 1.5) ** 2


def weights(expr: np.ndarray | Tensor) -> dict[str, float]:
    """Named channel weights of an ARKit-52 code, clipped to [0, 1] (only the non-zero ones)."""
    e = expr.detach().cpu().numpy() if torch.is_tensor(expr) else np.asarray(expr, np.float64)
    e = np.clip(e.astype(np.float64).reshape(-1), 0.0, 1.0)
    return {name: float(e[i]) for name, i in ARKIT_INDEX.items() if e[i] > 1e-4}


_CONST: dict[tuple, Tensor] = {}


def _vec(p: Tensor, v: tuple[float, ...]) -> Tensor:
    """A small constant tensor on p's device, made once (on a GPU each fresh one is a host-to-device copy)."""
    key = (tuple(float(x) for x in v), p.device, p.dtype)
    t = _CONST.get(key)
    if t is None:
        if len(_CONST) > 4096:
            _CONST.clear()
        t = _CONST[key] = torch.tensor(key[0], device=p.device, dtype=p.dtype)
    return t


def _g(p: Tensor, c: tuple[float, float, float], s: tuple[float, float, float]) -> Tensor:
    """Anisotropic Gaussian bump centred at c with radii s."""
    q = (p - _vec(p, c)) / _vec(p, s)
    return torch.exp(-(q * q).sum(-1))


def below_lip(p: Tensor, rig: Rig) -> Tensor:
    """1 for skin that belongs to the jaw (below the lip line), 0 above; a hard seam between the mouth corners,
    a widening ramp beyond them (the cheeks stretch instead of tearing), nothing behind the ears."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    past = (x.abs() - rig.mouth_w).clamp(min=0)
    width = 1e-5 + 1.2 * past
    w = (0.5 + (rig.slit_y(x) - y) / width).clamp(0, 1)
    front = ((z - (rig.hinge[2] - 0.035)) / 0.06).clamp(0, 1)
    return w * front * front * (3 - 2 * front)


def jaw_transform(w: dict[str, float], rig: Rig, device, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Rotation R and translation t of the jaw: p' = hinge + R (p - hinge) + t."""
    a = JAW_OPEN_RAD * w.get("jawOpen", 0.0)
    side = w.get("jawLeft", 0.0) - w.get("jawRight", 0.0)
    yaw = 0.06 * side
    ca, sa, cy, sy = math.cos(a), math.sin(a), math.cos(yaw), math.sin(yaw)
    rx = torch.tensor([[1, 0, 0], [0, ca, -sa], [0, sa, ca]], dtype=dtype, device=device)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=dtype, device=device)
    t = torch.tensor([JAW_SIDE_M * side, -0.002 * w.get("jawOpen", 0.0), JAW_FORWARD_M * w.get("jawForward", 0.0)],
                     dtype=dtype, device=device)
    return ry @ rx, t


def apply_jaw(p: Tensor, w: dict[str, float], rig: Rig, amount: Tensor | float = 1.0) -> Tensor:
    """Move points rigidly with the jaw, blended by `amount` (a scalar or per-point weights)."""
    R, t = jaw_transform(w, rig, p.device, p.dtype)
    h = _vec(p, rig.hinge)
    moved = (p - h) @ R.T + h + t
    if isinstance(amount, float):
        return p + amount * (moved - p)
    return p + amount[..., None] * (moved - p)


def face_deform(p: Tensor, w: dict[str, float], rig: Rig) -> Tensor:
    """Deform rest skin samples p (M, 3) by the expression weights w."""
    if not w:
        return p
    x, y = p[..., 0], p[..., 1]
    my, mw, lz = rig.mouth_y, rig.mouth_w, rig.lip_z
    below = below_lip(p, rig)
    d = torch.zeros_like(p)
    lips = _g(p, (0, my, lz), (mw * 1.15, 0.011, 0.022))
    upper, lower = lips * (1 - below), lips * below
    to_slit = rig.slit_y(x) - y  # positive below the lip line... upward distance to it
    cz = lz - 0.010
    for side, sgn in (("Left", 1.0), ("Right", -1.0)):
        corner = (sgn * mw, my - 0.0015, cz)
        sided = torch.sigmoid(sgn * x / 0.004)
        half_lip = _g(p, (sgn * mw * 0.45, my, lz), (mw * 0.75, 0.012, 0.025))
        if (a := w.get(f"mouthSmile{side}", 0.0)) > 0:
            # the corner is pulled up and back toward the ear, the cheek bunches up, and the upper lip lifts
            # off the teeth near the corner (a grin)
            d += a * _g(p, corner, (0.014, 0.012, 0.03))[..., None] * _vec(p, (sgn * 0.006, 0.009, -0.004))
            d += a * _g(p, (sgn * 0.037, my + 0.02, rig.cheek_z), (0.017, 0.015, 0.03))[..., None] * _vec(
                p, (sgn * 0.002, 0.0035, 0.003))
            d += a * (half_lip * (1 - below))[..., None] * _vec(p, (0.0, 0.0025, 0.0))
        if (a := w.get(f"mouthFrown{side}", 0.0)) > 0:
            d += a * _g(p, corner, (0.011, 0.012, 0.03))[..., None] * _vec(p, (sgn * 0.001, -0.0065, 0.0))
        if (a := w.get(f"mouthDimple{side}", 0.0)) > 0:
            d += a * _g(p, corner, (0.009, 0.009, 0.03))[..., None] * _vec(p, (sgn * 0.003, 0.0005, -0.004))
        if (a := w.get(f"mouthStretch{side}", 0.0)) > 0:
            d += a * _g(p, corner, (0.012, 0.013, 0.03))[..., None] * _vec(p, (sgn * 0.006, -0.0035, -0.002))
            d[..., 1] -= a * 0.002 * (lower * sided)
        if (a := w.get(f"mouthPress{side}", 0.0)) > 0:  # lips thin out toward the lip line
            d[..., 1] += a * 0.45 * to_slit * lips * sided
            d[..., 2] -= a * 0.001 * lips * sided
        if (a := w.get(f"mouthLowerDown{side}", 0.0)) > 0:
            d += a * (half_lip * below)[..., None] * _vec(p, (0.0, -0.0065, 0.001))
        if (a := w.get(f"mouthUpperUp{side}", 0.0)) > 0:
            d += a * (half_lip * (1 - below))[..., None] * _vec(p, (0.0, 0.006, 0.001))
        if (a := w.get(f"cheekSquint{side}", 0.0)) > 0:
            d += a * _g(p, (sgn * (rig.eye_x + 0.004), rig.eye_y - 0.02, rig.cheek_z), (0.016, 0.011, 0.03))[
                ..., None] * _vec(p, (0.0, 0.0035, 0.0015))
        if (a := w.get(f"eyeSquint{side}", 0.0)) > 0:
            d += a * _g(p, (sgn * rig.eye_x, rig.eye_y - 0.015, rig.cheek_z), (0.014, 0.008, 0.03))[
                ..., None] * _vec(p, (0.0, 0.002, 0.001))
        if (a := w.get(f"noseSneer{side}", 0.0)) > 0:
            tip = rig.nose_tip
            d += a * _g(p, (sgn * 0.012 * rig.nose_w, tip[1] - 0.004, tip[2] - 0.012), (0.008, 0.011, 0.03))[
                ..., None] * _vec(p, (sgn * 0.001, 0.004, 0.0005))
        if (a := w.get(f"browDown{side}", 0.0)) > 0:
            d += a * _g(p, (sgn * rig.eye_x, rig.brow_y, rig.brow_z), (0.022, 0.014, 0.035))[..., None] * _vec(
                p, (-sgn * 0.0025, -0.005, 0.0008))
            d[..., 2] += a * 0.0015 * _g(p, (sgn * 0.006, rig.brow_y - 0.004, rig.brow_z), (0.006, 0.009, 0.03))
        if (a := w.get(f"browOuterUp{side}", 0.0)) > 0:
            d += a * _g(p, (sgn * (rig.eye_x + 0.018), rig.brow_y, rig.brow_z - 0.01), (0.014, 0.016, 0.035))[
                ..., None] * _vec(p, (sgn * 0.0005, 0.0058, 0.0))
        if (a := w.get("cheekPuff", 0.0)) > 0:
            d += a * _g(p, (sgn * 0.043, my - 0.002, lz - 0.025), (0.02, 0.02, 0.03))[..., None] * _vec(
                p, (sgn * 0.009, -0.001, 0.004))
    if (a := w.get("browInnerUp", 0.0)) > 0:
        for sgn in (1.0, -1.0):
            d += a * _g(p, (sgn * 0.014, rig.brow_y, rig.brow_z), (0.016, 0.018, 0.035))[..., None] * _vec(
                p, (0.0, 0.0055, 0.0))
        forehead = _g(p, (0, rig.brow_y + 0.025, rig.brow_z), (0.04, 0.016, 0.04))
        d[..., 2] += a * 0.0005 * torch.sin(2 * math.pi * (y - rig.brow_y) / 0.008) * forehead
    if (a := w.get("mouthPucker", 0.0)) > 0:
        wide = _g(p, (0, my, lz), (mw * 1.4, 0.014, 0.025))
        d[..., 0] -= a * 0.5 * x * wide
        d[..., 2] += a * 0.008 * wide
        d[..., 1] += a * 0.25 * to_slit * lips
    if (a := w.get("mouthFunnel", 0.0)) > 0:
        wide = _g(p, (0, my, lz), (mw * 1.3, 0.014, 0.025))
        centre = _g(p, (0, my, lz), (mw * 0.7, 0.012, 0.025))
        d[..., 0] -= a * 0.18 * x * wide
        d[..., 2] += a * 0.006 * wide
        d[..., 1] += a * (0.0035 * centre * (1 - below) - 0.0045 * centre * below)
    if (a := w.get("mouthLeft", 0.0) - w.get("mouthRight", 0.0)) != 0:
        d += a * _g(p, (0, my, lz), (0.03, 0.022, 0.035))[..., None] * _vec(p, (0.008, 0.0, -0.001))
    if (a := w.get("mouthRollUpper", 0.0)) > 0:
        d[..., 1] += a * 0.55 * to_slit * upper
        d[..., 2] -= a * 0.004 * upper
    if (a := w.get("mouthRollLower", 0.0)) > 0:
        d[..., 1] += a * 0.55 * to_slit * lower
        d[..., 2] -= a * 0.004 * lower
    if (a := w.get("mouthShrugUpper", 0.0)) > 0:
        d += a * _g(p, (0, my + 0.006, lz), (mw, 0.01, 0.03))[..., None] * _vec(p, (0.0, 0.0025, 0.0025))
    if (a := w.get("mouthShrugLower", 0.0)) > 0:
        d += a * (_g(p, (0, my - 0.012, lz - 0.005), (mw * 1.1, 0.014, 0.03)) * below)[..., None] * _vec(
            p, (0.0, 0.004, 0.002))
    q = p + d
    amount = below * (1.0 - w.get("mouthClose", 0.0) * _g(p, (0, my, lz), (mw * 1.2, 0.012, 0.03)))
    if any(k in w for k in ("jawOpen", "jawLeft", "jawRight", "jawForward")):
        q = apply_jaw(q, w, rig, amount)
    return q


@dataclass
class LidShape:
    """Eyelid edge elevations in degrees for one eye (upper above lower), from the expression."""

    upper: float
    lower: float


def lid_shape(w: dict[str, float], side: str, open_upper: float, open_lower: float) -> LidShape:
    up, lo = open_upper, -open_lower
    blink = w.get(f"eyeBlink{side}", 0.0)
    up += 14.0 * w.get(f"eyeWide{side}", 0.0) + 6.0 * w.get(f"eyeLookUp{side}", 0.0)
    up -= 10.0 * w.get(f"eyeLookDown{side}", 0.0) + 5.0 * w.get(f"eyeSquint{side}", 0.0)
    lo += 9.0 * w.get(f"eyeSquint{side}", 0.0) + 5.0 * w.get(f"cheekSquint{side}", 0.0)
    lo -= 4.0 * w.get(f"eyeWide{side}", 0.0) + 3.0 * w.get(f"eyeLookDown{side}", 0.0)
    lo += 3.0 * blink
    up = up + (lo + 1.0 - up) * blink
    return LidShape(upper=max(up, lo + 0.5 * (1 - blink)), lower=lo)


def gaze(w: dict[str, float], side: str) -> tuple[float, float]:
    """(yaw toward +x, pitch up) in radians for one eye: "In" turns toward the nose."""
    sgn = 1.0 if side == "Left" else -1.0
    yaw = math.radians(28.0) * sgn * (w.get(f"eyeLookOut{side}", 0.0) - w.get(f"eyeLookIn{side}", 0.0))
    pitch = math.radians(22.0) * (w.get(f"eyeLookUp{side}", 0.0) - w.get(f"eyeLookDown{side}", 0.0))
    return yaw, pitch


def gaze_matrix(yaw: float, pitch: float, device=None, dtype=torch.float32) -> Tensor:
    """Rotation taking the eye's rest axis (+z) to the gaze direction."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=dtype, device=device)
    rx = torch.tensor([[1, 0, 0], [0, cp, sp], [0, -sp, cp]], dtype=dtype, device=device)  # +pitch looks up
    return ry @ rx
