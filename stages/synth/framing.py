"""Cameras like real users' captures, for the "cameras" switch of the wide training recipe.

The studio rig (stages.synth.studio) puts every camera 1 m from the head centre with one focal length. Real
captures are metric and vary: phones 0.3-0.6 m away with a 60-80° vertical field of view (strong perspective,
the head anywhere in the photo, a tilted phone), studio cameras 1-2 m away with 15-30°. `prepare` then cuts the
square around the projected head sphere and resizes it (stages.capture.imaging.head_square), so what the model
sees is that crop: its focal follows from the distance, and its principal point is off-centre whenever the head
was not on the photo's optical axis. This module builds exactly those crop cameras.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stages.cameras import Cameras, dome
from stages.capture.imaging import crop_cameras, head_square
from stages.synth.studio import JITTER_DEG

HEAD_RADIUS = 0.17  # metres: prepare's default --head-radius
PHONE = {"distance": (0.3, 0.6), "vfov": (60.0, 80.0), "roll": 8.0, "aspect": 0.75}  # portrait photos
STUDIO = {"distance": (1.0, 2.0), "vfov": (15.0, 30.0), "roll": 2.0, "aspect": 4 / 3}
PHONE_SHARE = 0.5  # subjects captured with a phone; the rest in a studio
PHOTO_HEIGHT = 1600  # pixels of the simulated photo (only the crop's rounding depends on it)
FRAME_SCALE = (0.85, 1.2)  # croppers frame the head more or less tightly than prepare's 0.17 m sphere
CENTRE_BOX = ((-0.015, 0.015), (-0.03, 0.015), (-0.01, 0.04))  # metres: where a cropper puts the "head centre"
DISTANCE_JITTER = 0.06  # relative, per camera: a hand-held phone does not keep one distance


def _uniform(g: torch.Generator, lo: float, hi: float, n: int | None = None) -> torch.Tensor | float:
    r = torch.rand(n if n is not None else 1, generator=g, dtype=torch.float64)
    x = lo + (hi - lo) * r
    return x if n is not None else float(x)


def local_rotation(yaw: float, pitch: float, roll: float = 0.0) -> torch.Tensor:
    """A camera-local rotation (radians): yaw about y, pitch about x, roll about the viewing axis."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll),
                              math.sin(roll))
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]], dtype=torch.float64)
    rz = torch.tensor([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]], dtype=torch.float64)
    return ry @ rx @ rz


def wide_cameras(n: int, size: int, generator: torch.Generator) -> Cameras:
    """n crop cameras (size²) of one subject's capture: a phone or a studio (one distance and field of view per
    subject, a little distance jitter per camera), each photo aimed so the head lands somewhere inside it and
    rolled a little, then cropped around the head sphere as `prepare` does."""
    g = generator
    kind = PHONE if float(torch.rand(1, generator=g)) < PHONE_SHARE else STUDIO
    dist = _uniform(g, *kind["distance"])
    vfov = math.radians(_uniform(g, *kind["vfov"]))
    frame = HEAD_RADIUS * _uniform(g, *FRAME_SCALE)
    centre = np.array([_uniform(g, *b) for b in CENTRE_BOX])
    rig = dome(n, radius=1.0, azimuth_span_deg=200.0, elevation_range_deg=(-25.0, 45.0), size=size,
               jitter=JITTER_DEG, generator=g)
    scale = dist * (1 + DISTANCE_JITTER * (2 * _uniform(g, 0.0, 1.0, n) - 1))
    height = PHOTO_HEIGHT
    width = int(round(height * kind["aspect"]))
    f_photo = (height / 2) / math.tan(vfov / 2)
    half_v, half_h = vfov / 2, math.atan(math.tan(vfov / 2) * kind["aspect"])
    out = []
    for i in range(n):
        c2w = rig.c2w[i].double().clone()
        c2w[:3, 3] = c2w[:3, 3] * scale[i] + torch.from_numpy(centre)
        head = math.asin(min(0.99, frame / float(scale[i])))  # angular radius of the head sphere
        yaw = _uniform(g, -1, 1) * max(0.0, half_h - head) * 0.8
        pitch = _uniform(g, -1, 1) * max(0.0, half_v - head) * 0.8
        roll = math.radians(_uniform(g, -1, 1) * kind["roll"])
        c2w[:3, :3] = c2w[:3, :3] @ local_rotation(yaw, pitch, roll)
        photo = Cameras(c2w[None], f_photo, f_photo, width / 2, height / 2, width, height)
        crop = head_square(photo, frame, centre)
        out.append(crop_cameras(photo, crop, size).to(dtype=torch.float32))
    return Cameras.cat(out)
