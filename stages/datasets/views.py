"""Camera rigs from raw calibrations, and the square head crops the loaders return.

Raw calibrations (OpenCV world-to-camera, pixel centres on integers, possibly for a larger image than the one
shipped, with lens distortion) become `Cameras` in our conventions; a rig is normalised with
`stages.capture.normalise` exactly as `prepare` does for photos; every view is then cut to the square around the
projected head sphere (`stages.capture.imaging.head_square`), undistorted and resampled in a single remap."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from stages.cameras import Cameras
from stages.capture.imaging import SquareCrop
from stages.capture.normalise import Normalisation, fit_normalisation
from stages.errors import BadInput

DEFAULT_HEAD_RADIUS = 0.17  # metres around the head centre the crop encloses (head, hair and some neck)


def calibration_factor(cx: float, width: int, given: str | None = None) -> float:
    """How many times larger than the shipped image the calibration's image is (1, 2, 4 or 8).

    Datasets calibrate at the sensor's resolution and ship smaller images (Ava256: 2668x4096 calibrations,
    667x1024 or 1334x2048 images). The principal point sits near the image centre, so 2*cx/width tells the
    factor; `given` (a loader option) overrides the guess."""
    if given is not None:
        try:
            f = float(given)
        except ValueError:
            f = float("nan")
        if not f > 0:
            raise BadInput(f"calibration factor must be a positive number, got {given!r}")
        return f
    ratio = max(2.0 * cx / max(width, 1), 1e-6)
    return float(min((1, 2, 4, 8), key=lambda f: abs(math.log(ratio / f))))


PIXEL_SCALINGS = ("corners", "centres")


def opencv_rig(w2c: np.ndarray, K: np.ndarray, width: int, height: int, factor: np.ndarray | float = 1.0,
               metres_per_unit: float = 1.0, scaling: str = "corners") -> Cameras:
    """Cameras from OpenCV world-to-camera matrices (N, 3|4, 4) and intrinsics (N, 3, 3) calibrated for images
    `factor` times larger than width x height (pixel centres on integers); translations become metres.

    How a calibration carries over to the smaller image depends on how the dataset made that image:
    - "corners": an area resize, whose image corners line up: scale about the corner, so the principal point
      becomes (c + 0.5) / factor in pixel-corner coordinates;
    - "centres": the dataset scales its integer-centre intrinsics by 1 / factor (Ava256's own loader does
      `K[:2] / downsample`, and its images follow that), so pixel i of the small image sits at i * factor of
      the large one: the principal point becomes c / factor + 0.5.
    The two differ by (0.5 - 0.5 / factor) px per axis: 0.375 px (0.53 px diagonally) at factor 4."""
    if scaling not in PIXEL_SCALINGS:
        raise ValueError(f"scaling must be one of {PIXEL_SCALINGS}, got {scaling!r}")
    w2c = np.asarray(w2c, np.float64)
    n = w2c.shape[0]
    M = np.tile(np.eye(4), (n, 1, 1))
    M[:, :3, :4] = w2c[:, :3, :4]
    M[:, :3, 3] *= metres_per_unit
    c2w = np.linalg.inv(M) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> OpenGL ones
    K = np.broadcast_to(np.asarray(K, np.float64), (n, 3, 3))
    f = np.broadcast_to(np.asarray(factor, np.float64), (n,))
    if scaling == "corners":  # integer pixel centres -> pixel corners (+0.5), then scale about the corner
        cx, cy = (K[:, 0, 2] + 0.5) / f, (K[:, 1, 2] + 0.5) / f
    else:  # scale the integer-centre principal point, then move to pixel corners (+0.5)
        cx, cy = K[:, 0, 2] / f + 0.5, K[:, 1, 2] / f + 0.5
    return Cameras(torch.from_numpy(c2w), torch.from_numpy(K[:, 0, 0] / f), torch.from_numpy(K[:, 1, 1] / f),
                   torch.from_numpy(cx), torch.from_numpy(cy), int(width), int(height))


def parse_scale(text: str | None) -> str | float:
    """The `scale` loader option: metric (default: metres), auto (mean camera distance 1) or a number."""
    if text in (None, "", "metric"):
        return "metric"
    if text == "auto":
        return "auto"
    return _positive(text, "scale option must be metric, auto or a positive number")


def parse_radius(text: str | None) -> float:
    """The `head_radius` loader option (default DEFAULT_HEAD_RADIUS), a positive number."""
    if text in (None, ""):
        return DEFAULT_HEAD_RADIUS
    return _positive(text, "head_radius option must be a positive number")


def _positive(text: str | None, message: str) -> float:
    """A loader option as a finite positive number; BadInput(message) otherwise."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise BadInput(f"{message}, got {text!r}")
    return value


def fit_rig(cameras: Cameras, scale: str | float, where: str) -> Normalisation:
    """The world normalisation of a rig (see `stages.capture.normalise`), BadInput naming the calibration."""
    try:
        return fit_normalisation(cameras.to(dtype=torch.float64), scale)
    except BadInput as exc:
        raise BadInput(str(exc), where) from exc


def head_crops(cameras: Cameras, radius: float, where: str) -> list[SquareCrop]:
    """The square around the head sphere (centre at the origin) in every camera's image: the same squares as
    `stages.capture.imaging.head_square`, for a whole rig at once (Ava256 rigs have ~80 cameras per frame)."""
    c2w = cameras.c2w.detach().cpu().double().numpy()
    eye = c2w[:, :3, 3]
    d = np.linalg.norm(eye, axis=1)
    inside = np.flatnonzero(d <= radius * 1.001)
    if len(inside):
        raise BadInput(f"camera {int(inside[0])} is inside the head sphere (distance {d[inside[0]]:.3g} <= head "
                       f"radius {radius:.3g})", where)
    nrm = eye / d[:, None]
    a = np.cross(nrm, [0.0, 1.0, 0.0])
    flat = np.linalg.norm(a, axis=1) < 1e-6
    a[flat] = np.cross(nrm[flat], [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(nrm, a)
    theta = np.linspace(0, 2 * math.pi, 129)[:-1]
    rho = radius * np.sqrt(d * d - radius * radius) / d
    rim = (nrm * (radius * radius / d)[:, None])[:, None] + rho[:, None, None] * (
        np.cos(theta)[None, :, None] * a[:, None] + np.sin(theta)[None, :, None] * b[:, None])
    pts = np.concatenate([np.zeros((len(eye), 1, 3)), rim], axis=1)
    w2c = np.linalg.inv(c2w @ np.diag([1.0, -1.0, -1.0, 1.0]))
    q = np.einsum("nij,npj->npi", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3]
    behind = np.flatnonzero(q[:, 0, 2] <= 0)
    if len(behind):
        raise BadInput(f"the head centre is behind camera {int(behind[0])}", where)
    fx, fy, cx, cy = (t.detach().cpu().double().numpy()[:, None] for t in (cameras.fx, cameras.fy, cameras.cx,
                                                                            cameras.cy))
    z = np.maximum(q[..., 2], 1e-8)
    uv = np.stack([fx * q[..., 0] / z + cx, fy * q[..., 1] / z + cy], axis=-1)
    half = np.abs(uv[:, 1:] - uv[:, :1]).max(axis=(1, 2))
    out = []
    for i in range(len(eye)):
        size = int(math.ceil(2 * half[i]))
        u0, v0 = float(uv[i, 0, 0]), float(uv[i, 0, 1])
        out.append(SquareCrop(int(round(u0 - size / 2)), int(round(v0 - size / 2)), size, (u0, v0), float(half[i])))
    return out


def cropped_rig(cameras: Cameras, crops: list[SquareCrop], size: int) -> Cameras:
    """The cameras of the size x size crops (what `crop_cameras` gives per camera, for a whole rig)."""
    cams = cameras.to(dtype=torch.float32)
    x0, y0, side = (torch.tensor([float(getattr(c, k)) for c in crops]) for k in ("x0", "y0", "size"))
    s = size / side
    return Cameras(cams.c2w, cams.fx * s, cams.fy * s, (cams.cx - x0) * s, (cams.cy - y0) * s, size, size)


def distort(x: np.ndarray, y: np.ndarray, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's lens model (k1, k2, p1, p2[, k3]) on normalised image coordinates."""
    k = np.zeros(5)
    k[: min(5, len(coeffs))] = np.asarray(coeffs, np.float64)[:5]
    k1, k2, p1, p2, k3 = (float(c) for c in k)  # Python floats keep float32 arrays float32
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


@dataclass
class CropMap:
    """Where each pixel of a head crop samples its photo (OpenCV remap maps), and which pixels the photo covers."""

    map_x: np.ndarray  # (n, n) float32, source x with pixel centres on integers
    map_y: np.ndarray
    valid: np.ndarray  # (size, size) float32: 1 inside the photo, 0 in the padding
    size: int


def crop_map(camera: Cameras, crop: SquareCrop, size: int, width: int, height: int,
             distortion: np.ndarray | None = None) -> CropMap:
    """The resampling that cuts the head square out of a (possibly distorted) width x height photo.

    For every crop pixel the ideal pinhole ray is pushed through the lens model to the source pixel, so the
    output is undistorted; the square is sampled at min(its size, 2*size) pixels and then area-filtered to
    size, which avoids aliasing when shrinking."""
    n = int(max(size, min(crop.size, 2 * size)))
    fx, fy, cx, cy = (float(v[0]) for v in (camera.fx, camera.fy, camera.cx, camera.cy))
    grid = ((np.arange(n, dtype=np.float32) + 0.5) * np.float32(crop.size / n))
    xn = ((grid + np.float32(crop.x0 - cx)) / np.float32(fx))[None, :].repeat(n, 0)
    yn = ((grid + np.float32(crop.y0 - cy)) / np.float32(fy))[:, None].repeat(n, 1)
    if distortion is not None and np.any(np.asarray(distortion) != 0):
        xn, yn = distort(xn, yn, np.asarray(distortion, np.float32))
    map_x = (np.float32(fx) * xn + np.float32(cx - 0.5)).astype(np.float32)  # OpenCV: pixel centres on integers
    map_y = (np.float32(fy) * yn + np.float32(cy - 0.5)).astype(np.float32)
    inside = ((map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5)).astype(np.float32)
    if n != size:
        inside = cv2.resize(inside, (size, size), interpolation=cv2.INTER_AREA)
    return CropMap(map_x, map_y, inside, size)


def apply_crop(img: np.ndarray, cmap: CropMap) -> np.ndarray:
    """Resample an (H, W, C) float32 photo (any C) through a CropMap to (size, size, C)."""
    out = _by4(img, lambda x: cv2.remap(x, cmap.map_x, cmap.map_y, cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    if out.shape[0] != cmap.size:
        out = _by4(out, lambda x: cv2.resize(x, (cmap.size, cmap.size), interpolation=cv2.INTER_AREA))
    return out


def _by4(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply an OpenCV call that takes at most 4 channels to a stack with any number of them."""
    parts = [fn(np.ascontiguousarray(img[..., k:k + 4])) for k in range(0, img.shape[2], 4)]
    return np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=2)
