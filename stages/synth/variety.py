"""Wider identities and lighting for the wide training recipe, as edits of a sampled identity.

`sample_identity` stays as it is (the shipped model's data and every stored dataset depend on it); these
functions take its output and redraw some fields from wider ranges, seeded, so a subject is still a pure
function of its seed. What the generator can do cheaply is covered: head and face proportions, skin (tone,
undertone, brightness), hair style and colour (greying with age), beards for more people, brows, neck length
and width, clothing colour, and the light rig. Glasses, wrinkles and accessories would need new geometry and
are not here.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from stages.synth.identity import HAIR_COLOURS, HAIR_STYLES, HeadIdentity, _jitter, skin_from_tone


def _clip(x: float, lo: float, hi: float) -> float:
    return float(np.clip(x, lo, hi))


def widen_identity(idn: HeadIdentity, seed: int) -> HeadIdentity:
    """The identity with proportions drawn ~2× wider, skin tone uniform over the whole range with varied
    undertone and brightness, any hair style and colour (plus greying with a random age), beards at any
    masculinity above 0.3, a neck that shows more or less, and any shirt colour."""
    rng = np.random.default_rng(seed)
    n, u = rng.normal, rng.uniform
    age = float(u(0, 1))
    tone = float(u(0, 1))
    skin = _jitter(rng, skin_from_tone(tone, float(n(0, 1.0))), 0.07)
    style = str(list(HAIR_STYLES)[int(rng.integers(len(HAIR_STYLES)))])
    hair = np.asarray(HAIR_COLOURS[list(HAIR_COLOURS)[int(rng.integers(len(HAIR_COLOURS)))]][0])
    grey = np.array([0.55, 0.54, 0.53])
    greying = _clip((age - 0.55) * 2.2 + n(0, 0.15), 0, 1)
    hair = _jitter(rng, hair * (1 - greying) + grey * greying, 0.12)
    thickness = {"bald": 0.0, "buzz": float(u(0.0008, 0.0025)), "short": float(u(0.005, 0.016)),
                 "medium": float(u(0.01, 0.024)), "long": float(u(0.008, 0.02)),
                 "volume": float(u(0.022, 0.05))}[style]
    length = {"medium": float(u(0.015, 0.06)), "long": float(u(0.08, 0.24)), "volume": float(u(0.0, 0.05))}.get(
        style, 0.0)
    beard, beard_len, moustache = idn.beard, idn.beard_length, idn.moustache
    if idn.masculinity > 0.3 and u() < 0.6:
        beard, beard_len = float(u(0.25, 1.0)), float(u(0.0, 0.012))
        moustache = float(u(0.3, 1.0))
    elif u() < 0.3:
        beard, beard_len, moustache = 0.0, 0.0, 0.0
    lip = np.asarray(skin) * np.array([0.88, 0.6, 0.62]) * (1 + n(0, 0.08))
    return replace(
        idn,
        head_width=_clip(n(1.0, 0.07), 0.85, 1.15), head_height=_clip(n(1.0, 0.07), 0.85, 1.15),
        head_depth=_clip(n(1.0, 0.07), 0.85, 1.15), face_length=_clip(n(1.0, 0.07), 0.85, 1.18),
        jaw_width=_clip(n(1.0, 0.12), 0.75, 1.3), chin_length=float(n(0.0, 0.008)),
        chin_forward=float(n(0.0, 0.008)), cheek_fullness=float(u(0, 1)),
        nose_length=_clip(n(1.0, 0.12), 0.75, 1.35), nose_width=_clip(n(1.05, 0.15), 0.7, 1.45),
        nose_projection=_clip(n(1.0, 0.15), 0.65, 1.4),
        eye_spacing=_clip(n(0.0315, 0.0022), 0.027, 0.036), eye_open_upper=_clip(n(25.0, 6.0), 14, 38),
        skin_tone=tone, skin_color=skin, lip_color=tuple(float(x) for x in np.clip(lip, 0.02, 1)),
        redness=_clip(n(0.5, 0.3), 0, 1),
        hair_style=style, hair_color=hair, hair_thickness=thickness, hair_length=length,
        hairline=float(n(0.072, 0.009)), recession=_clip(u(-0.3, 1.0) * (0.4 + age), 0, 1),
        brow_color=_jitter(rng, np.asarray(hair) * 0.7, 0.1), brow_density=_clip(n(0.8, 0.18), 0.3, 1.0),
        beard=beard, beard_length=beard_len, moustache=moustache, beard_color=_jitter(rng, np.asarray(hair) * 0.85,
                                                                                      0.08),
        neck_width=_clip(n(1.0, 0.09), 0.8, 1.3), collar_height=float(u(-0.24, -0.13)),
        shirt_color=tuple(float(x) for x in rng.uniform(0.05, 0.9, 3)),
    )


def vary_lighting(idn: HeadIdentity, seed: int) -> HeadIdentity:
    """The identity under a different light rig: the key from anywhere in front (±90° azimuth, -10..70°
    elevation), 0.5-1.3× as strong, fill, rim and ambient from near-absent to strong (soft to harsh contrast),
    and a warm-to-cool tint of the whole rig."""
    rng = np.random.default_rng(seed)
    u = rng.uniform
    temp = float(u(-1, 1))
    tint = (1 + 0.12 * temp, 1.0, 1 - 0.16 * temp)
    return replace(idn, light_azimuth=float(u(-90, 90)), light_elevation=float(u(-10, 70)),
                   light_warmth=float(u(-0.8, 0.8)), light_key=0.78 * float(u(0.5, 1.3)),
                   light_fill=float(u(0.2, 1.8)), light_rim=float(u(0.0, 2.0)), light_ambient=float(u(0.35, 1.5)),
                   light_tint=tint)
