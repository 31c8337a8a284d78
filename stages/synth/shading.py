"""Baked studio lighting: colours depend on surface normals and a fixed set of lights in the world frame, never
on the viewer, so every camera of a capture sees one consistent appearance (as under diffuse studio light).

Lighting happens in linear RGB (albedo is sRGB): a soft key light, a fill, a rim from behind, sky/ground
ambient, and ambient occlusion; skin gets wrapped diffuse (light bleeding past the terminator, warm in the
shadow) as a cheap nod to subsurface scattering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stages.synth.identity import HeadIdentity

INTERIOR = (0.045, 0.012, 0.012)  # what the inside of the head looks like through the lips


@dataclass(frozen=True)
class Lights:
    key: tuple[float, float, float]
    fill: tuple[float, float, float]
    rim: tuple[float, float, float]
    key_rgb: tuple[float, float, float]
    fill_rgb: tuple[float, float, float]
    rim_rgb: tuple[float, float, float]
    sky: tuple[float, float, float]
    ground: tuple[float, float, float]


def _dir(az_deg: float, el_deg: float) -> tuple[float, float, float]:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return (math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az))


def lights_for(idn: HeadIdentity) -> Lights:
    w = idn.light_warmth
    warm = (1.0 + 0.06 * w, 1.0, 1.0 - 0.08 * w)
    return Lights(
        key=_dir(-35.0 + idn.light_azimuth, idn.light_elevation), fill=_dir(50.0 + 0.5 * idn.light_azimuth, 5.0),
        rim=_dir(160.0, 35.0),
        key_rgb=_scaled((0.78 * c for c in warm), idn.light_key / 0.78, idn.light_tint),
        fill_rgb=_scaled((0.3, 0.31, 0.33), idn.light_fill, idn.light_tint),
        rim_rgb=_scaled((0.22, 0.22, 0.24), idn.light_rim, idn.light_tint),
        sky=_scaled((0.36, 0.37, 0.4), idn.light_ambient, idn.light_tint),
        ground=_scaled((0.16, 0.14, 0.13), idn.light_ambient, idn.light_tint))


def _scaled(rgb, factor: float, tint: tuple[float, float, float]) -> tuple[float, float, float]:  # noqa: ANN001
    """A light colour times a factor and a tint; the defaults (1.0, white) leave it exactly as it was."""
    rgb = tuple(rgb)
    if factor == 1.0 and tuple(tint) == (1.0, 1.0, 1.0):
        return rgb
    return tuple(float(c * factor * t) for c, t in zip(rgb, tint, strict=True))


def to_linear(c: Tensor) -> Tensor:
    return c.clamp(0, 1) ** 2.2


def to_srgb(c: Tensor) -> Tensor:
    return c.clamp(1e-8, 1) ** (1 / 2.2)


def shade(albedo: Tensor, normal: Tensor, ao: Tensor | None, lights: Lights, wrap: float | Tensor = 0.0,
          sheen: Tensor | None = None) -> Tensor:
    """sRGB colour (N, 3) of albedo (N, 3) with unit normals (N, 3) under the studio lights; `wrap` (a number
    or (N, 1) per sample) is how far diffuse light wraps past the terminator (skin: ~0.35)."""
    a = to_linear(albedo)
    n = normal
    occ = torch.ones_like(n[..., 0]) if ao is None else ao
    L = _light_tensors(lights, n.device, n.dtype)
    dots = n @ L[:3].T  # (N, 3): key, fill, rim
    lam = ((dots + wrap) / (1 + wrap)).clamp(min=0)
    hemi = 0.5 + 0.5 * n[..., 1]
    amb = L[6] + (L[7] - L[6]) * hemi[..., None]
    direct = lam @ L[3:6]
    light = amb * occ[..., None] + direct * (0.35 + 0.65 * occ)[..., None]
    if torch.is_tensor(wrap) or wrap > 0:  # warm light bleeding into the shadow side of skin
        skin = (torch.as_tensor(wrap) > 0).to(n.dtype)
        light = light * (1 + 0.12 * skin * (1 - lam[:, :1]) * L[8])
    out = a * light
    if sheen is not None:
        spec = (n @ L[9]).clamp(min=0) ** 8
        out = out + (sheen * spec * occ)[..., None] * 0.35 * (0.3 + a)
    return to_srgb(out)


_LIGHTS: dict[tuple, Tensor] = {}


def _light_tensors(lights: Lights, device, dtype) -> Tensor:
    """(10, 3): key, fill, rim directions; their colours; ground, sky; the skin's shadow tint; the sheen
    half-vector — made once per lights and device."""
    key = (lights, device, dtype)
    if key not in _LIGHTS:
        if len(_LIGHTS) > 64:
            _LIGHTS.clear()
        half = torch.tensor(lights.key) + torch.tensor((0.0, 0.0, 1.0))
        rows = [lights.key, lights.fill, lights.rim, lights.key_rgb, lights.fill_rgb, lights.rim_rgb, lights.ground,
                lights.sky, (0.25, -0.05, -0.12), tuple((half / half.norm()).tolist())]
        _LIGHTS[key] = torch.tensor(rows, dtype=dtype, device=device)
    return _LIGHTS[key]


def interior(n: int, like: Tensor) -> Tensor:
    """The colour of the inside of the head, for n samples."""
    return torch.tensor(INTERIOR, dtype=like.dtype).to(like.device).expand(n, 3)
