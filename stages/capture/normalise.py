"""World normalisation for `prepare`: bring any camera rig into the capture frame of SPEC section 2 (head
centre at the origin, +y up, the face along +z) using nothing but the cameras.

x_capture = scale * R @ (x_source - centre), with
- centre: the point closest, in the least-squares sense, to every camera's optical axis (the rig's common
  look-at point, which is the head for a head capture). When the axes do not pin down a point (one view, or
  parallel cameras) it is put one source unit in front of the cameras along their mean viewing direction.
- up (+y): cameras are assumed upright (no roll), so their x axes are horizontal and the vertical is the
  direction most perpendicular to all of them (smallest eigenvector of sum r r^T, signed like the cameras'
  mean up vector). When the x axes do not span a plane (all cameras at one azimuth) the mean up vector is
  used, made perpendicular to their common x axis.
- front (+z): from the centre toward the mean camera position, made horizontal (the face is what the cameras
  look at). When the cameras surround the head evenly, the first camera's direction is the front.
- scale: `auto` makes the mean camera distance 1.0 (the synthetic studio radius the shipped model was trained
  at); `metric` keeps the source units (taken as metres); a number multiplies the source units.
- with photos that show a face (`face_anchor`): when the axes do not pin the point, or it lies far from the
  head the face shows (parallel video frames, phone photos), the head's centre and axes from the face replace
  the look-at point and the camera-derived axes (`centre_from: face` in the record).
`keep=True` trusts the source world to be in the SPEC frame already: R = I, centre = 0, only the scale
applies (`auto` then makes the mean camera distance from the origin 1.0).
The transform is recorded in the capture's transforms.json (`normalisation`) so it can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from stages.cameras import Cameras
from stages.capture.face_anchor import HeadAnchor
from stages.errors import BadInput

FACE_AGREEMENT = 0.15  # look-at point this far from the face's head centre (x mean camera distance): use the face


@dataclass
class Normalisation:
    """x_capture = scale * rotation @ (x_source - centre)."""

    scale: float
    rotation: np.ndarray  # (3, 3), rows are the capture axes x, y, z in source coordinates
    centre: np.ndarray  # (3,), source coordinates
    method: str = "cameras"  # cameras: the optical axes' look-at point; face: the head found in the photos

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """Source-world points (..., 3) in capture coordinates."""
        return self.scale * (np.asarray(points, np.float64) - self.centre) @ self.rotation.T

    def apply(self, cameras: Cameras) -> Cameras:
        """The same cameras expressed in the capture frame (rotation and position; intrinsics untouched)."""
        c2w = cameras.c2w.detach().cpu().double().numpy().copy()
        c2w[:, :3, :3] = self.rotation @ c2w[:, :3, :3]
        c2w[:, :3, 3] = self.apply_points(c2w[:, :3, 3])
        return replace(cameras, c2w=torch.from_numpy(c2w).to(cameras.c2w))

    def to_json(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "rotation": [[float(v) for v in row] for row in self.rotation],
                "centre": [float(v) for v in self.centre], "centre_from": self.method,
                "convention": "x_capture = scale * rotation @ (x_source - centre)"}


def look_at_point(cameras: Cameras) -> tuple[np.ndarray, bool]:
    """The least-squares point closest to all optical axes, and whether the axes pinned it down."""
    o = cameras.centers().detach().cpu().double().numpy()
    d = cameras.forward_dirs().detach().cpu().double().numpy()
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projectors onto each axis' normal plane
    A, b = P.sum(0), np.einsum("nij,nj->i", P, o)
    eig = np.linalg.eigvalsh(A)
    if eig[0] < 1e-3 * len(o):  # axes (nearly) parallel: no unique closest point
        mean_d = d.mean(0) / np.linalg.norm(d.mean(0))
        return o.mean(0) + mean_d, False
    return np.linalg.solve(A, b), True


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _up_axis(cameras: Cameras) -> np.ndarray:
    c2w = cameras.c2w.detach().cpu().double().numpy()
    rights, ups = c2w[:, :3, 0], c2w[:, :3, 1]
    mean_up = ups.mean(0)
    vals, vecs = np.linalg.eigh(rights.T @ rights / len(rights))
    if vals[1] > 0.02:  # x axes spread over a plane: its normal is the vertical
        up = vecs[:, 0]
    else:  # one common x axis: the mean up vector, minus its part along that axis
        common = vecs[:, 2]
        up = mean_up - (mean_up @ common) * common
    if np.linalg.norm(up) < 1e-6:
        raise BadInput("cannot tell which way is up from the cameras")
    up = _unit(up)
    return up if up @ mean_up >= 0 else -up


def fit_normalisation(cameras: Cameras, scale: str | float = "auto", keep: bool = False,
                      anchor: HeadAnchor | None = None) -> Normalisation:
    """The normalisation of a rig (see the module docstring); BadInput if the cameras face no common point.

    `anchor` (the head found from the face, `face_anchor`) replaces the look-at point and the camera-derived
    axes when the optical axes do not pin a point or their point is farther than FACE_AGREEMENT times the
    mean camera distance from the head (phones, videos); studio rigs that aim at the head keep today's frame."""
    o = cameras.centers().detach().cpu().double().numpy()
    if keep:
        s = _scale_factor(scale, float(np.linalg.norm(o, axis=1).mean()))
        return Normalisation(s, np.eye(3), np.zeros(3))
    centre, pinned = look_at_point(cameras)
    if anchor is not None:
        dist = float(np.linalg.norm(o - anchor.centre, axis=1).mean())
        if not pinned or np.linalg.norm(centre - anchor.centre) > FACE_AGREEMENT * dist:
            return Normalisation(_scale_factor(scale, dist), anchor.axes.copy(), anchor.centre.copy(), "face")
    d = cameras.forward_dirs().detach().cpu().double().numpy()
    ahead = np.einsum("ni,ni->n", centre[None] - o, d)
    if np.any(ahead <= 0):
        bad = [int(i) for i in np.flatnonzero(ahead <= 0)]
        raise BadInput(f"the cameras do not look at a common point (it lies behind view(s) {bad})")
    y = _up_axis(cameras)
    front = o.mean(0) - centre
    front = front - (front @ y) * y
    if np.linalg.norm(front) < 0.05 * np.linalg.norm(o - centre, axis=1).mean():
        front = o[0] - centre  # cameras all around: the first view is the front
        front = front - (front @ y) * y
    if np.linalg.norm(front) < 1e-9:
        raise BadInput("cannot tell where the front is: the first camera looks straight down or up")
    z = _unit(front)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return Normalisation(_scale_factor(scale, float(np.linalg.norm(o - centre, axis=1).mean())), R, centre)


def _scale_factor(scale: str | float, mean_dist: float) -> float:
    """auto: mean camera distance becomes 1; metric: 1; a number: itself."""
    if scale == "auto":
        s = 1.0 / mean_dist if mean_dist > 0 else float("nan")
    elif scale == "metric":
        s = 1.0
    else:
        try:
            s = float(scale)
        except (TypeError, ValueError):
            s = float("nan")
    if not np.isfinite(s) or s <= 0:
        raise BadInput(f"--scale must be auto, metric or a positive number, got {scale!r}")
    return s
