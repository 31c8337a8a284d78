"""The identity axis of the synthetic head: every shape, colour and hair parameter of one person.

An identity is a frozen dataclass of plain floats (colours as RGB tuples in sRGB [0,1]) so that it can be
hashed (the built head is cached per identity), printed, and stored as JSON beside a dataset. Lengths are in
metres. `sample_identity` draws one from a seed; equal seeds give equal identities on every machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

RGB = tuple[float, float, float]

# Skin albedo from light to dark (sRGB); a continuous tone in [0, 1] interpolates between them.
SKIN_ANCHORS = np.array([
    [0.97, 0.82, 0.72], [0.93, 0.74, 0.62], [0.85, 0.62, 0.47], [0.70, 0.48, 0.33], [0.50, 0.33, 0.22],
    [0.32, 0.20, 0.13]], np.float64)
HAIR_COLOURS = {  # name: (rgb, weight)
    "black": ((0.035, 0.032, 0.030), 3.0), "dark_brown": ((0.11, 0.07, 0.045), 3.0),
    "brown": ((0.25, 0.15, 0.08), 2.5), "light_brown": ((0.42, 0.29, 0.17), 1.5),
    "blonde": ((0.8, 0.6, 0.32), 1.2), "platinum": ((0.9, 0.82, 0.64), 0.4), "auburn": ((0.48, 0.17, 0.07), 0.8),
    "grey": ((0.52, 0.51, 0.50), 0.8), "white": ((0.86, 0.86, 0.84), 0.3),
}
IRIS_COLOURS = [((0.20, 0.10, 0.05), 3.0), ((0.36, 0.21, 0.09), 2.5), ((0.44, 0.36, 0.16), 1.0),
                ((0.28, 0.40, 0.22), 0.8), ((0.27, 0.45, 0.66), 1.2), ((0.46, 0.54, 0.60), 0.8)]
HAIR_STYLES = {"bald": 0.07, "buzz": 0.13, "short": 0.30, "medium": 0.20, "long": 0.18, "volume": 0.12}


@dataclass(frozen=True)
class HeadIdentity:
    """One synthetic person. Proportions are multipliers around 1 unless a unit is given."""

    seed: int
    masculinity: float
    # skull and face proportions
    head_width: float
    head_height: float
    head_depth: float
    face_length: float
    jaw_width: float
    chin_length: float  # metres the chin extends below its mean position
    chin_forward: float  # metres
    chin_width: float
    cheekbone: float  # 0..1 prominence
    cheek_fullness: float  # 0..1
    brow_ridge: float  # 0..1
    # nose
    nose_length: float
    nose_width: float
    nose_projection: float
    nose_tip: float
    nose_hump: float
    # mouth (metres)
    mouth_width: float  # half width
    upper_lip: float  # thickness
    lower_lip: float
    lip_color: RGB
    # eyes
    eye_spacing: float  # half distance between eyeball centres, metres
    eye_height: float  # metres (y of the eye line)
    eye_radius: float  # metres
    eye_open_upper: float  # degrees of the upper lid edge above the eye axis
    eye_open_lower: float
    eye_width: float  # degrees half-width of the lid aperture
    eye_tilt: float  # canthal tilt, degrees per degree of azimuth
    iris_color: RGB
    iris_size: float  # angular radius, degrees
    # brows
    brow_thickness: float  # metres
    brow_arch: float  # metres
    brow_height: float  # metres above the eye line
    brow_color: RGB
    brow_density: float
    # ears
    ear_size: float
    ear_protrusion: float  # degrees
    ear_height: float  # metres offset
    # skin
    skin_tone: float  # 0 light .. 1 dark
    skin_color: RGB
    redness: float
    freckles: float
    # hair
    hair_style: str
    hair_color: RGB
    hair_thickness: float  # metres of volume over the skull
    hair_length: float  # metres that long hair hangs below the skull edge
    hairline: float  # metres: y of the front hairline
    recession: float  # 0..1 temple recession
    crown_bald: float  # 0..1
    curl: float  # 0 straight .. 1 tight curls
    parting: float  # -1..1 where the side parting sits (0: none)
    fringe: float  # 0..1 how far hair falls onto the forehead
    # beard
    beard: float  # density 0..1 (0 = none)
    beard_length: float  # metres
    moustache: float  # 0..1
    beard_color: RGB
    # neck, clothing, light
    neck_width: float
    shirt_color: RGB
    collar_height: float
    light_azimuth: float  # degrees
    light_elevation: float
    light_warmth: float
    texture_seed: int
    # light rig strength and colour (defaults: the original studio; the wide training recipe varies them)
    light_key: float = 0.78  # key light intensity
    light_fill: float = 1.0  # multiplier on the fill light
    light_rim: float = 1.0  # multiplier on the rim light
    light_ambient: float = 1.0  # multiplier on the sky/ground ambient
    light_tint: RGB = (1.0, 1.0, 1.0)  # colour of the whole rig (a room's light)

    def key(self) -> tuple:
        """A hashable summary (the dataclass is frozen, so the fields themselves)."""
        return tuple(asdict(self).values())


def _rng(seed_or_generator: int | torch.Generator | np.random.Generator) -> tuple[np.random.Generator, int]:
    if isinstance(seed_or_generator, np.random.Generator):
        seed = int(seed_or_generator.integers(0, 2**62))
    elif isinstance(seed_or_generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed_or_generator))
    else:
        seed = int(seed_or_generator)
    return np.random.default_rng(seed), seed


def _pick(rng: np.random.Generator, options: dict[str, float] | list) -> object:
    if isinstance(options, dict):
        keys, w = list(options), np.array(list(options.values()), np.float64)
    else:
        keys, w = [o[0] for o in options], np.array([o[1] for o in options], np.float64)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _jitter(rng: np.random.Generator, rgb, amount: float) -> RGB:
    """Vary a colour mostly in brightness (a shared factor) and only slightly in hue (per channel)."""
    c = np.asarray(rgb, np.float64) * (1 + rng.normal(0, amount)) * (1 + rng.normal(0, 0.03, 3))
    return tuple(float(x) for x in np.clip(c, 0.01, 1.0))


def skin_from_tone(tone: float, undertone: float) -> RGB:
    """Skin albedo for a tone in [0,1] (piecewise-linear through SKIN_ANCHORS) and an undertone in [-1,1]
    (negative: pink, positive: olive/yellow)."""
    x = np.clip(tone, 0, 1) * (len(SKIN_ANCHORS) - 1)
    i = min(int(x), len(SKIN_ANCHORS) - 2)
    c = SKIN_ANCHORS[i] * (1 - (x - i)) + SKIN_ANCHORS[i + 1] * (x - i)
    c = c + np.array([-0.015, 0.005, -0.03]) * undertone
    return tuple(float(v) for v in np.clip(c, 0, 1))


def sample_identity(seed_or_generator: int | torch.Generator | np.random.Generator) -> HeadIdentity:
    """Draw one identity. A plain int seed, a torch.Generator or a numpy Generator are accepted."""
    rng, seed = _rng(seed_or_generator)
    n = rng.normal
    u = rng.uniform
    masc = float(np.clip(u(0, 1), 0, 1))
    tone = float(u(0, 1) ** 0.9)
    skin = skin_from_tone(tone, float(n(0, 0.6)))
    # hair colour: darker skin tones mostly have dark hair; ageing greys appear at any tone
    colours = dict(HAIR_COLOURS)
    weights = {k: w * (1.0 if k in ("black", "dark_brown", "grey", "white") else max(0.05, 1 - 1.2 * tone))
               for k, (_, w) in colours.items()}
    hair_name = _pick(rng, weights)
    hair_rgb = _jitter(rng, colours[hair_name][0], 0.12)
    style_w = dict(HAIR_STYLES)
    style_w["bald"] *= 0.3 + 1.7 * masc
    style_w["long"] *= 1.7 - 1.4 * masc
    style_w["buzz"] *= 0.4 + 1.2 * masc
    style = str(_pick(rng, style_w))
    thickness = {"bald": 0.0, "buzz": float(u(0.0008, 0.0022)), "short": float(u(0.006, 0.014)),
                 "medium": float(u(0.011, 0.02)), "long": float(u(0.008, 0.016)),
                 "volume": float(u(0.024, 0.042))}[style]
    length = {"medium": float(u(0.015, 0.05)), "long": float(u(0.09, 0.2)), "volume": float(u(0.0, 0.04))}.get(
        style, 0.0)
    beard = 0.0
    beard_len = 0.0
    if masc > 0.45 and u() < 0.55:
        kind = rng.choice(3, p=[0.45, 0.35, 0.2])
        beard = [float(u(0.25, 0.5)), float(u(0.7, 0.95)), float(u(0.9, 1.0))][kind]
        beard_len = [0.0, float(u(0.0015, 0.004)), float(u(0.005, 0.011))][kind]
    beard_rgb = _jitter(rng, np.asarray(hair_rgb) * (0.8 if hair_name not in ("grey", "white") else 1.0), 0.08)
    brow_rgb = _jitter(rng, np.asarray(hair_rgb) * 0.75 if hair_name not in ("platinum", "white", "grey", "blonde")
                       else np.asarray(hair_rgb) * 0.6, 0.08)
    lip = np.asarray(skin) * np.array([0.88, 0.6, 0.62]) + np.array([0.04, 0.0, 0.01]) * (1 - tone)
    lip = lip * (1 + n(0, 0.05)) * (1.0 - 0.1 * tone)
    shirt = _jitter(rng, [(0.12, 0.14, 0.2), (0.85, 0.85, 0.85), (0.3, 0.3, 0.32), (0.5, 0.12, 0.12),
                          (0.15, 0.3, 0.2), (0.6, 0.55, 0.45), (0.2, 0.3, 0.55)][int(rng.integers(7))], 0.1)
    iris = _jitter(rng, _pick(rng, IRIS_COLOURS) if tone < 0.55 else IRIS_COLOURS[int(rng.integers(2))][0], 0.1)
    return HeadIdentity(
        seed=seed, masculinity=masc,
        head_width=float(np.clip(n(1.0, 0.035), 0.9, 1.1)), head_height=float(np.clip(n(1.0, 0.035), 0.9, 1.1)),
        head_depth=float(np.clip(n(1.0, 0.035), 0.9, 1.1)),
        face_length=float(np.clip(n(1.0 + 0.03 * masc, 0.035), 0.9, 1.12)),
        jaw_width=float(np.clip(n(0.95 + 0.12 * masc, 0.06), 0.8, 1.2)),
        chin_length=float(n(0.0, 0.004)), chin_forward=float(n(0.0, 0.004)),
        chin_width=float(np.clip(n(0.9 + 0.25 * masc, 0.12), 0.6, 1.4)),
        cheekbone=float(u(0.2, 1.0)), cheek_fullness=float(u(0.0, 1.0)),
        brow_ridge=float(np.clip(0.2 + 0.6 * masc + n(0, 0.15), 0, 1)),
        nose_length=float(np.clip(n(1.0 + 0.05 * masc, 0.07), 0.8, 1.25)),
        nose_width=float(np.clip(n(1.0 + 0.12 * tone, 0.09), 0.75, 1.35)),
        nose_projection=float(np.clip(n(1.0 - 0.12 * tone, 0.1), 0.7, 1.3)),
        nose_tip=float(np.clip(n(1.0, 0.12), 0.7, 1.4)), nose_hump=float(np.clip(n(0.0, 0.5), -1, 1)),
        mouth_width=float(np.clip(n(0.0245, 0.0018), 0.02, 0.029)),
        upper_lip=float(np.clip(n(0.0055 + 0.0015 * tone - 0.001 * masc, 0.001), 0.0035, 0.009)),
        lower_lip=float(np.clip(n(0.0075 + 0.0015 * tone - 0.001 * masc, 0.0012), 0.005, 0.011)),
        lip_color=tuple(float(x) for x in np.clip(lip, 0.02, 1)),
        eye_spacing=float(np.clip(n(0.0315, 0.0014), 0.028, 0.035)), eye_height=float(n(0.004, 0.003)),
        eye_radius=float(np.clip(n(0.0121, 0.0004), 0.0112, 0.013)),
        eye_open_upper=float(np.clip(n(26.0, 4.0), 17, 36)), eye_open_lower=float(np.clip(n(27.0, 3.0), 20, 34)),
        eye_width=float(np.clip(n(56.0, 3.0), 48, 63)), eye_tilt=float(np.clip(n(0.05, 0.07), -0.1, 0.22)),
        iris_color=iris, iris_size=float(np.clip(n(27.0, 1.2), 24, 30)),
        brow_thickness=float(np.clip(n(0.0045 + 0.0015 * masc, 0.001), 0.0025, 0.0075)),
        brow_arch=float(np.clip(n(0.003, 0.0015), 0.0, 0.007)),
        brow_height=float(np.clip(n(0.021 - 0.003 * masc, 0.002), 0.015, 0.027)),
        brow_color=brow_rgb, brow_density=float(np.clip(n(0.85, 0.12), 0.45, 1.0)),
        ear_size=float(np.clip(n(1.0 + 0.04 * masc, 0.07), 0.85, 1.2)),
        ear_protrusion=float(np.clip(n(22.0, 6.0), 8, 38)), ear_height=float(n(0.0, 0.004)),
        skin_tone=tone, skin_color=skin, redness=float(np.clip(n(0.5, 0.25), 0, 1)),
        freckles=float(max(0.0, u(-1.5, 1.0)) * (1 - tone)),
        hair_style=style, hair_color=hair_rgb, hair_thickness=thickness, hair_length=length,
        hairline=float(n(0.072, 0.006)), recession=float(np.clip(u(-0.3, 1.0) * masc, 0, 1)),
        crown_bald=float(np.clip(u(-2.0, 1.0), 0, 1) * masc if style in ("buzz", "short", "bald") else 0.0),
        curl=float(np.clip(u(-0.3, 1.0) + 0.6 * tone, 0, 1) if style != "volume" else u(0.7, 1.0)),
        parting=float(u(-1, 1) if u() < 0.5 else 0.0),
        fringe=float(np.clip(u(-0.8, 1.0), 0, 1) if style in ("medium", "long", "volume") else 0.0),
        beard=beard, beard_length=beard_len, moustache=float(u(0.3, 1.0) if beard > 0 else 0.0),
        beard_color=beard_rgb,
        neck_width=float(np.clip(n(1.0 + 0.08 * masc, 0.05), 0.85, 1.2)),
        shirt_color=shirt, collar_height=float(u(-0.175, -0.14)),
        light_azimuth=float(n(0.0, 20.0)), light_elevation=float(n(30.0, 8.0)),
        light_warmth=float(n(0.0, 0.3)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )
