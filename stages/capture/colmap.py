"""Read a COLMAP text model (`cameras.txt`, `images.txt`) into pinhole cameras in nerfstudio conventions.

COLMAP facts this relies on (COLMAP's documentation, "Output format" and "Keypoints"):
- `images.txt` holds two lines per image: `IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`, then its 2D points
  (possibly an empty line). (q, t) map world to camera, x_cam = R(q) x_world + t, with OpenCV camera axes
  (x right, y down, z forward); q is a Hamilton quaternion, scalar first.
- The image corner is (0, 0) and the centre of the top-left pixel is (0.5, 0.5): the same pixel convention as
  nerfstudio and SPEC section 2, so cx, cy are taken as they are (no +0.5 as for OpenCV calibrations).
- Camera models and their parameters: SIMPLE_PINHOLE f cx cy; PINHOLE fx fy cx cy; SIMPLE_RADIAL f cx cy k;
  RADIAL f cx cy k1 k2; OPENCV fx fy cx cy k1 k2 p1 p2; FULL_OPENCV fx fy cx cy k1 k2 p1 p2 k3 k4 k5 k6. The
  radial/tangential ones are OpenCV's distortion model, so their coefficients map onto OpenCV's vector
  (k1, k2, p1, p2[, k3, k4, k5, k6]); `prepare` undistorts such images. Fisheye and other models are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras
from stages.errors import BadInput

# model name -> (number of params, function from params to (fx, fy, cx, cy, OpenCV distortion vector))
_MODELS = {
    "SIMPLE_PINHOLE": (3, lambda p: (p[0], p[0], p[1], p[2], [])),
    "PINHOLE": (4, lambda p: (p[0], p[1], p[2], p[3], [])),
    "SIMPLE_RADIAL": (4, lambda p: (p[0], p[0], p[1], p[2], [p[3], 0.0, 0.0, 0.0])),
    "RADIAL": (5, lambda p: (p[0], p[0], p[1], p[2], [p[3], p[4], 0.0, 0.0])),
    "OPENCV": (8, lambda p: (p[0], p[1], p[2], p[3], list(p[4:8]))),
    "FULL_OPENCV": (12, lambda p: (p[0], p[1], p[2], p[3], list(p[4:12]))),
}


@dataclass
class ColmapView:
    """One registered image of a COLMAP model."""

    name: str
    image_path: Path
    camera: Cameras  # one camera, OpenGL c2w, nerfstudio pixel convention
    distortion: np.ndarray  # OpenCV order; empty for pinhole models


def find_colmap_model(root: Path) -> Path | None:
    """The folder holding cameras.txt and images.txt: `root`, `root/sparse/0` or `root/sparse`."""
    for cand in (root, root / "sparse" / "0", root / "sparse"):
        if (cand / "cameras.txt").is_file() and (cand / "images.txt").is_file():
            return cand
    return None


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a Hamilton quaternion (w, x, y, z); the quaternion is normalised first."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _content_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line that is not a comment; blank lines kept (images.txt needs them)."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise BadInput("not a text file (binary COLMAP models must be converted to TXT first)", path) from exc
    return [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines()) if not ln.lstrip().startswith("#")]


def _floats(tokens: list[str], path: Path, lineno: int) -> list[float]:
    try:
        out = [float(t) for t in tokens]
    except ValueError as exc:
        raise BadInput(f"line {lineno}: expected numbers, got {' '.join(tokens)!r}", path) from exc
    if not np.all(np.isfinite(out)):
        raise BadInput(f"line {lineno}: numbers must be finite", path)
    return out


def read_cameras_txt(path: Path) -> dict[int, tuple[int, int, tuple[float, float, float, float], np.ndarray]]:
    """camera id -> (width, height, (fx, fy, cx, cy), OpenCV distortion)."""
    cams = {}
    for lineno, line in _content_lines(path):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 4:
            raise BadInput(f"line {lineno}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'", path)
        model = tok[1].upper()
        if model not in _MODELS:
            raise BadInput(f"line {lineno}: camera model {model} is not supported (use a pinhole or "
                           "OpenCV-style model, or undistort with `colmap image_undistorter`)", path)
        n_params, convert = _MODELS[model]
        nums = _floats([tok[0], *tok[2:]], path, lineno)
        if len(nums) != 3 + n_params:
            raise BadInput(f"line {lineno}: {model} takes {n_params} parameters, got {len(nums) - 3}", path)
        cam_id, width, height, params = int(nums[0]), int(nums[1]), int(nums[2]), nums[3:]
        fx, fy, cx, cy, dist = convert(params)
        if width <= 0 or height <= 0 or fx <= 0 or fy <= 0:
            raise BadInput(f"line {lineno}: non-positive image size or focal length", path)
        cams[cam_id] = (width, height, (fx, fy, cx, cy), np.asarray(dist, np.float64))
    if not cams:
        raise BadInput("no cameras listed", path)
    return cams


def read_colmap(model_dir: Path, images_dir: Path) -> list[ColmapView]:
    """Every registered image of the model, sorted by name, with its camera in nerfstudio conventions."""
    cams = read_cameras_txt(model_dir / "cameras.txt")
    path = model_dir / "images.txt"
    lines = _content_lines(path)
    views, k = [], 0
    while k < len(lines):
        lineno, line = lines[k]
        if not line:
            k += 1
            continue
        tok = line.split(maxsplit=9)
        if len(tok) != 10:
            raise BadInput(f"line {lineno}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'", path)
        nums = _floats(tok[1:9], path, lineno)
        cam_id, name = int(nums[7]), tok[9]
        if cam_id not in cams:
            raise BadInput(f"line {lineno}: image {name} uses camera {cam_id}, which cameras.txt does not "
                           "list", path)
        q, t = np.asarray(nums[:4]), np.asarray(nums[4:7])
        if np.linalg.norm(q) < 1e-8:
            raise BadInput(f"line {lineno}: the quaternion of image {name} is zero", path)
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = qvec_to_rotmat(q), t
        width, height, (fx, fy, cx, cy), dist = cams[cam_id]
        K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
        camera = Cameras.from_opencv(torch.from_numpy(w2c), K, width, height, integer_centres=False)
        views.append(ColmapView(name, images_dir / name, camera, dist))
        k += 2  # skip the POINTS2D line that follows every image line
    if not views:
        raise BadInput("no registered images listed", path)
    return sorted(views, key=lambda v: v.name)
