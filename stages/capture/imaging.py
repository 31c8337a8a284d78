"""Pixel work for `prepare`: remove lens distortion, find the square around the head, crop and resample.

All images here are float32 (H, W, C) stacks, so colour, mask and validity (which pixels came from the photo
rather than from padding) travel through exactly the same resampling. OpenCV puts pixel centres on integers;
our cameras put them at +0.5 (SPEC section 2), so 0.5 is subtracted from cx, cy whenever a K goes to OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stages.cameras import Cameras
from stages.errors import BadInput


def _chunked(img: np.ndarray, fn) -> np.ndarray:  # noqa: ANN001 (a cv2 call on at most 4 channels)
    """Apply an OpenCV call that takes at most 4 channels to a stack with any number of them."""
    parts = [fn(np.ascontiguousarray(img[..., k:k + 4])) for k in range(0, img.shape[2], 4)]
    return np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=2)


def opencv_K(camera: Cameras) -> np.ndarray:
    """The 3x3 K of a one-camera batch in OpenCV's integer-centre convention."""
    K = camera.K()[0].detach().cpu().double().numpy().copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    return K


def undistort(img: np.ndarray, camera: Cameras, distortion: np.ndarray) -> np.ndarray:
    """Resample a distorted photo to the ideal pinhole with the same K (pixels with no source become 0)."""
    K = opencv_K(camera)
    size = (img.shape[1], img.shape[0])
    mx, my = cv2.initUndistortRectifyMap(K, np.asarray(distortion, np.float64), None, K, size, cv2.CV_32FC1)
    return _chunked(img, lambda x: cv2.remap(x, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                             borderValue=0))


@dataclass
class SquareCrop:
    """An integer pixel square [x0, x0 + size) x [y0, y0 + size) of a photo; it may extend past the edges."""

    x0: int
    y0: int
    size: int
    centre: tuple[float, float] = (0.0, 0.0)  # the projected head centre, pixel-corner coordinates
    radius: float = 0.0  # half the side of the projected head sphere's bounding square, pixels

    def rect(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the part inside a width x height image, or None when it covers none of it."""
        xa, ya = max(self.x0, 0), max(self.y0, 0)
        xb, yb = min(self.x0 + self.size, width), min(self.y0 + self.size, height)
        return (xa, ya, xb - xa, yb - ya) if xb > xa and yb > ya else None


def head_square(camera: Cameras, radius: float, centre: np.ndarray | None = None) -> SquareCrop:
    """The square centred on the projected head centre that encloses the projected head sphere.

    The sphere's outline is the circle where the tangent cone from the camera touches it; its projection is
    sampled and the square is made large enough to hold it."""
    c = torch.zeros(3, dtype=torch.float64) if centre is None else torch.as_tensor(centre).double()
    cam = camera.to(dtype=torch.float64)
    eye = cam.centers()[0]
    d = float((eye - c).norm())
    if d <= radius * 1.001:
        raise BadInput(f"a camera is inside the head sphere (distance {d:.3g} <= --head-radius {radius:.3g})")
    n = (eye - c) / d
    a = torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    if a.norm() < 1e-6:
        a = torch.linalg.cross(n, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    a = a / a.norm()
    b = torch.linalg.cross(n, a)
    theta = torch.linspace(0, 2 * math.pi, 129, dtype=torch.float64)[:-1, None]
    rho = radius * math.sqrt(d * d - radius * radius) / d
    rim = c + n * (radius * radius / d) + rho * (torch.cos(theta) * a + torch.sin(theta) * b)
    uv, z = cam.project(torch.cat([c[None], rim]))
    if bool((z[0] <= 0).any()):
        raise BadInput("the head centre is behind a camera")
    uv = uv[0].numpy()
    half = float(np.abs(uv[1:] - uv[0]).max())
    size = int(math.ceil(2 * half))
    return SquareCrop(int(round(uv[0, 0] - size / 2)), int(round(uv[0, 1] - size / 2)), size,
                      (float(uv[0, 0]), float(uv[0, 1])), half)


def crop_resize(img: np.ndarray, crop: SquareCrop, res: int) -> np.ndarray:
    """Cut the square (zero padding outside the photo) and resample it to res x res: area filter when
    shrinking, bilinear when enlarging. OpenCV's resize maps corners to corners, as `Cameras.resized` does."""
    h, w, ch = img.shape
    out = np.zeros((crop.size, crop.size, ch), np.float32)
    rect = crop.rect(w, h)
    if rect is not None:
        x, y, rw, rh = rect
        out[y - crop.y0:y - crop.y0 + rh, x - crop.x0:x - crop.x0 + rw] = img[y:y + rh, x:x + rw]
    interp = cv2.INTER_AREA if crop.size > res else cv2.INTER_LINEAR
    return _chunked(out, lambda x: cv2.resize(x, (res, res), interpolation=interp))


def crop_cameras(camera: Cameras, crop: SquareCrop, res: int) -> Cameras:
    """Intrinsics for `crop_resize`'s output."""
    return camera.cropped(crop.x0, crop.y0, crop.size, crop.size).resized(res, res)
