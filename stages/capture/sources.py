"""What `prepare` reads: a folder of photos with their cameras, as nerfstudio `transforms.json` or a COLMAP
text model. Both become a list of `SourceView`s (one pinhole camera in nerfstudio conventions per photo, plus
the lens distortion still to be removed), so the rest of `prepare` does not care where the cameras came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stages.cameras import Cameras, read_transforms
from stages.capture.colmap import find_colmap_model, read_colmap
from stages.errors import BadInput

# nerfstudio's distortion keys; OpenCV's order is (k1, k2, p1, p2, k3).
_NS_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


@dataclass
class SourceView:
    """One input photo: where it is, its camera (nerfstudio pixel convention), its lens distortion."""

    name: str  # a label for messages and provenance (the file path as the source wrote it)
    image_path: Path
    camera: Cameras  # one camera, OpenGL c2w, pixel centres at +0.5, in the source's world units
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))  # OpenCV order; all zero = pinhole
    mask_path: Path | None = None  # a mask the source names explicitly (nerfstudio `mask_path`)
    expression: list[float] | None = None
    image: np.ndarray | None = None  # the decoded RGB uint8 photo, for sources that read it already (faces)
    frame_index: int | None = None  # a video frame's index in its clip

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.distortion != 0))


@dataclass
class Source:
    """The parsed source folder."""

    root: Path  # the folder the user passed
    kind: str  # "nerfstudio" or "colmap"
    cameras_file: Path  # transforms.json or images.txt: the file to name when cameras and images disagree
    views: list[SourceView]
    meta: dict[str, Any] = field(default_factory=dict)  # carried over: expression_space


def load_source(src: str | Path) -> Source:
    """Find and parse the cameras in `src`: `transforms.json` first, then a COLMAP text model."""
    root = Path(src)
    if not root.exists():
        raise BadInput("source folder not found", root)
    if root.is_file() and root.name == "transforms.json":
        return _load_nerfstudio(root)
    if not root.is_dir():
        raise BadInput("expected a folder with transforms.json or a COLMAP text model", root)
    if (root / "transforms.json").is_file():
        return _load_nerfstudio(root / "transforms.json")
    model = find_colmap_model(root)
    if model is not None:
        images_dir = _colmap_images_dir(root, model)
        views = [SourceView(v.name, v.image_path, v.camera, v.distortion)
                 for v in read_colmap(model, images_dir)]
        return Source(root, "colmap", model / "images.txt", views)
    if (root / "cameras.bin").is_file() or (root / "sparse" / "0" / "cameras.bin").is_file():
        raise BadInput("found a binary COLMAP model; convert it with `colmap model_converter --output_type "
                       "TXT`", root)
    raise BadInput("no transforms.json and no COLMAP text model (cameras.txt, images.txt) found", root)


def _colmap_images_dir(root: Path, model: Path) -> Path:
    """COLMAP images live in `images/` beside the model, or beside `sparse/`."""
    for cand in (root / "images", model / "images", model.parent / "images", model.parent.parent / "images"):
        if cand.is_dir():
            return cand
    raise BadInput("COLMAP model found but no images/ folder beside it", root)


def _coefficient(value: object, key: str, frame: int, path: Path) -> float:
    try:
        out = float(value or 0.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out = float("nan")
    if not np.isfinite(out):
        raise BadInput(f"frame {frame}: distortion coefficient {key} must be a finite number", path)
    return out


def _load_nerfstudio(path: Path) -> Source:
    tf = read_transforms(path)
    views = []
    for i, fr in enumerate(tf.frames):
        model = str(fr.extra.get("camera_model", tf.meta.get("camera_model", "OPENCV"))).upper()
        if "FISHEYE" in model or "EQUIRECT" in model:
            raise BadInput(f"frame {i} uses camera_model {model}, not a pinhole model; undistort first", path)
        coeffs = {k: _coefficient(fr.extra.get(k, tf.meta.get(k, 0.0)), k, i, path) for k in _NS_DISTORTION}
        if coeffs["k4"] != 0.0:
            raise BadInput(f"frame {i} has k4 = {coeffs['k4']}, which only fisheye models use; undistort "
                           "first", path)
        if model in ("SIMPLE_PINHOLE", "PINHOLE") and any(coeffs.values()):
            raise BadInput(f"frame {i} is a {model} camera but has distortion coefficients", path)
        dist = np.array([coeffs["k1"], coeffs["k2"], coeffs["p1"], coeffs["p2"], coeffs["k3"]])
        expr = fr.extra.get("expression")
        views.append(SourceView(fr.file_path, tf.image_path(i), fr.camera(), dist,
                                tf.mask_path(i), list(expr) if isinstance(expr, list) else None))
    meta = {k: tf.meta[k] for k in ("expression_space",) if k in tf.meta}
    return Source(path.parent, "nerfstudio", path, views, meta)
