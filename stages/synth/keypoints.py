"""3D facial landmarks of a posed synthetic head (for keypoint-distance metrics such as AKD).

Skin landmarks are points of the rest skin (found by tracing the SDF along -z at known face coordinates) moved
by the same expression deformation as the skin; eye landmarks come from the eyelid and gaze model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from stages.synth import parts
from stages.synth.rig import face_deform, gaze, gaze_matrix, lid_shape, weights
from stages.synth.shape import head_sdf

KEYPOINT_NAMES: tuple[str, ...] = (
    "right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer",
    "right_upper_lid", "right_lower_lid", "left_upper_lid", "left_lower_lid", "right_pupil", "left_pupil",
    "right_brow_outer", "right_brow_middle", "right_brow_inner", "left_brow_inner", "left_brow_middle",
    "left_brow_outer", "nose_root", "nose_tip", "nose_right_wing", "nose_left_wing", "mouth_right", "mouth_left",
    "upper_lip_top", "upper_lip_bottom", "lower_lip_top", "lower_lip_bottom", "chin", "jaw_right", "jaw_left",
)


def trace_front(idn, xy: Tensor) -> Tensor:
    """Rest skin points (K, 3) at face coordinates (K, 2), tracing along -z from z = 0.2 (vectorised)."""
    o = torch.cat([xy, torch.full_like(xy[:, :1], 0.2)], -1)
    t = torch.zeros(xy.shape[0], dtype=xy.dtype, device=xy.device)
    d = xy.new_tensor((0.0, 0.0, -1.0))
    for _ in range(80):
        t = t + 0.8 * head_sdf(o + t[:, None] * d, idn)
    return o + t[:, None] * d


def _skin_rest(model) -> Tensor:
    """Rest positions of the skin landmarks (cached on the model)."""
    if getattr(model, "_kp_rest", None) is not None:
        return model._kp_rest
    rig, idn = model.rig, model.idn
    ex, ey, by = rig.eye_x, rig.eye_y, rig.brow_y
    x_in, x_out = ex - 0.019, ex + 0.025
    mw, my = rig.mouth_w, rig.mouth_y
    tip = rig.nose_tip
    ys = my - 0.0018
    xy = [(-x_out + 0.003, by - 0.001), (-(ex + 0.002), by + idn.brow_arch + 0.0005), (-x_in - 0.002, by),
          (x_in + 0.002, by), (ex + 0.002, by + idn.brow_arch + 0.0005), (x_out - 0.003, by - 0.001),
          (0.0, ey + 0.004), (0.0, tip[1]), (-0.0125 * rig.nose_w, tip[1] - 0.005),
          (0.0125 * rig.nose_w, tip[1] - 0.005), (-mw * 0.98, ys + 0.0006), (mw * 0.98, ys + 0.0006),
          (0.0, my + idn.upper_lip * 0.85), (0.0, my + 0.0004), (0.0, my - 0.0004),
          (0.0, my - idn.lower_lip * 0.8), (0.0, rig_chin(model)), (-0.05 * idn.jaw_width, my - 0.02),
          (0.05 * idn.jaw_width, my - 0.02), (-mw * 0.98, ys - 0.0006), (mw * 0.98, ys - 0.0006)]
    pts = trace_front(idn, torch.tensor(xy, dtype=torch.float32, device=model.device))
    model._kp_rest = pts
    return pts


def rig_chin(model) -> float:
    from stages.synth.shape import anatomy

    return anatomy(model.idn).chin_y + 0.006


def keypoints(model, expression: np.ndarray) -> Tensor:
    """(K, 3) world landmarks in KEYPOINT_NAMES order for the model posed at `expression`."""
    w = weights(expression)
    rig, idn = model.rig, model.idn
    skin = _skin_rest(model)
    skin = face_deform(skin, w, rig) if w else skin
    # a mouth corner is where the lips meet: halfway between the upper and the lower lip's end
    skin = torch.cat([skin[:10], 0.5 * (skin[10:12] + skin[19:21]), skin[12:19]])
    eyes = []
    lid = []
    pupils = []
    for side, sgn in (("Right", -1.0), ("Left", 1.0)):
        centre = skin.new_tensor((sgn * rig.eye_x, rig.eye_y, rig.eye_z))
        shape = lid_shape(w, side, idn.eye_open_upper, idn.eye_open_lower)
        b = skin.new_tensor([idn.eye_width, -idn.eye_width, 0.0]) * sgn  # temple corner, nose corner, centre
        up, lo = parts.eye_opening(idn, b, shape, sgn)
        radius = rig.eye_r + 0.0011

        def on_sphere(alpha_deg: Tensor, beta_deg: Tensor, centre=centre, radius=radius) -> Tensor:
            a, bb = alpha_deg * math.pi / 180, beta_deg * math.pi / 180
            d = torch.stack([torch.cos(a) * torch.sin(bb), torch.sin(a), torch.cos(a) * torch.cos(bb)], -1)
            return centre + radius * d

        corners = on_sphere(up[:2], b[:2])  # b[0] = the temple side, b[1] = the nose side
        outer, inner = corners[0], corners[1]
        eyes.append((outer, inner) if side == "Right" else (inner, outer))
        lid.append(on_sphere(up[2:], b[2:])[0])
        lid.append(on_sphere(lo[2:], b[2:])[0])
        yaw, pitch = gaze(w, side)
        R = gaze_matrix(yaw, pitch, skin.device)
        pupils.append(centre + R @ skin.new_tensor((0.0, 0.0, rig.eye_r)))
    corners = [eyes[0][0], eyes[0][1], eyes[1][0], eyes[1][1]]
    return torch.stack(corners + lid + pupils + list(skin))
