"""Read and write nerfstudio `transforms.json` (SPEC section 2): intrinsics at the top level or per frame,
`file_path` / optional `mask_path`, 4x4 camera-to-world in OpenGL axes, and any extra per-frame fields
(such as `expression`) carried through untouched."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.cameras.camera import Cameras
from stages.errors import BadInput
from stages.io import read_json, write_json

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
MAX_IMAGE_SIDE = 8192  # larger frames would need tens of GB for the per-pixel buffers of the renderer
_UNSUPPORTED_MODELS = {"OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR"}


@dataclass
class Frame:
    """One frame of a transforms file: a camera and its image, plus whatever else the file recorded."""

    file_path: str
    c2w: np.ndarray  # (4, 4) float64, OpenGL axes
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int
    mask_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def camera(self) -> Cameras:
        return Cameras(torch.tensor(self.c2w, dtype=torch.float32)[None], torch.tensor([self.fl_x]),
                       torch.tensor([self.fl_y]), torch.tensor([self.cx]), torch.tensor([self.cy]), self.w, self.h)


@dataclass
class Transforms:
    """A parsed transforms file; `root` is the folder image paths are relative to."""

    frames: list[Frame]
    root: Path
    meta: dict[str, Any] = field(default_factory=dict)  # top-level keys other than intrinsics and frames

    def cameras(self) -> Cameras:
        """All frames as one Cameras batch; every frame must share one image size."""
        sizes = {(f.w, f.h) for f in self.frames}
        if len(sizes) != 1:
            raise BadInput(f"frames have different image sizes {sorted(sizes)}", self.root / "transforms.json")
        return Cameras.cat([f.camera() for f in self.frames])

    def image_path(self, i: int) -> Path:
        return resolve(self.root, self.frames[i].file_path)

    def mask_path(self, i: int) -> Path | None:
        m = self.frames[i].mask_path
        return resolve(self.root, m) if m else None


def resolve(root: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else root / p


def _number(value: Any, key: str, path: Path) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"'{key}' must be a number, got {value!r}", path) from exc
    if not np.isfinite(out):
        raise BadInput(f"'{key}' is not finite", path)
    return out


def read_transforms(path: str | Path) -> Transforms:
    """Parse a transforms.json (or a folder holding one), validating every camera."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise BadInput("expected an object with a non-empty 'frames' list", path)
    model = str(data.get("camera_model", "OPENCV")).upper()
    if model in _UNSUPPORTED_MODELS:
        raise BadInput(f"camera_model {model} is not a pinhole model; undistort the images first", path)
    frames = []
    for k, fr in enumerate(data["frames"]):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise BadInput(f"frame {k} needs 'file_path' and 'transform_matrix'", path)
        intr = {}
        for key in INTRINSIC_KEYS:
            value = fr.get(key, data.get(key))
            if value is None and key == "fl_y":
                value = fr.get("fl_x", data.get("fl_x"))
            if value is None:
                raise BadInput(f"frame {k} has no '{key}' (neither per frame nor at the top level)", path)
            intr[key] = _number(value, key, path)
        fmodel = str(fr.get("camera_model", model)).upper()
        if fmodel in _UNSUPPORTED_MODELS:
            raise BadInput(f"frame {k} uses camera_model {fmodel}, not a pinhole model", path)
        try:
            c2w = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"frame {k} transform_matrix is not a 4x4 matrix of numbers", path) from exc
        if c2w.shape == (3, 4):
            c2w = np.vstack([c2w, [0, 0, 0, 1]])
        if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
            raise BadInput(f"frame {k} transform_matrix must be a finite 4x4 matrix", path)
        if intr["w"] <= 0 or intr["h"] <= 0 or intr["fl_x"] <= 0 or intr["fl_y"] <= 0:
            raise BadInput(f"frame {k} has non-positive image size or focal length", path)
        if intr["w"] > MAX_IMAGE_SIDE or intr["h"] > MAX_IMAGE_SIDE:
            raise BadInput(f"frame {k} asks for a {intr['w']:g}x{intr['h']:g} image; at most {MAX_IMAGE_SIDE} "
                           "pixels a side are rendered", path)
        extra = {key: v for key, v in fr.items()
                 if key not in (*INTRINSIC_KEYS, "file_path", "mask_path", "transform_matrix")}
        frames.append(Frame(str(fr["file_path"]), c2w, intr["fl_x"], intr["fl_y"], intr["cx"], intr["cy"],
                            int(round(intr["w"])), int(round(intr["h"])), fr.get("mask_path"), extra))
    meta = {k: v for k, v in data.items() if k not in (*INTRINSIC_KEYS, "frames")}
    return Transforms(frames, path.parent, meta)


def frames_from_cameras(cameras: Cameras, file_paths: list[str], extras: list[dict[str, Any]] | None = None,
                        mask_paths: list[str | None] | None = None) -> list[Frame]:
    """Frames for a Cameras batch, one per camera, in order."""
    if len(file_paths) != len(cameras):
        raise ValueError("one file path per camera is required")
    c = cameras.to("cpu", torch.float64)
    return [Frame(file_paths[i], c.c2w[i].numpy(), float(c.fx[i]), float(c.fy[i]), float(c.cx[i]), float(c.cy[i]),
                  cameras.width, cameras.height, mask_paths[i] if mask_paths else None,
                  dict(extras[i]) if extras else {}) for i in range(len(cameras))]


def write_transforms(path: str | Path, frames: list[Frame], meta: dict[str, Any] | None = None) -> None:
    """Write frames as nerfstudio JSON; shared intrinsics go to the top level, differing ones per frame."""
    path = Path(path)
    out: dict[str, Any] = {"camera_model": "OPENCV"}
    out.update(meta or {})
    shared = {k: getattr(frames[0], k) for k in INTRINSIC_KEYS}
    if any(any(getattr(f, k) != shared[k] for k in INTRINSIC_KEYS) for f in frames):
        shared = {}
    out.update(shared)
    out["frames"] = []
    for f in frames:
        fr: dict[str, Any] = {"file_path": f.file_path}
        if f.mask_path:
            fr["mask_path"] = f.mask_path
        if not shared:
            fr.update({k: getattr(f, k) for k in INTRINSIC_KEYS})
        fr["transform_matrix"] = [[float(x) for x in row] for row in f.c2w]
        fr.update(f.extra)
        out["frames"].append(fr)
    write_json(path, out)
