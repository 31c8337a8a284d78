"""Ava256 (facebookresearch/ava-256) in its published layout, read lazily from its zip archives.

ROOT is a folder of captures, one capture folder, or its `decoder/` folder. Per capture:
```
{capture}/decoder/camera_calibration.json   {"KRT": [{"cameraId", "K", "distortion" (k1 k2 p1 p2), "T"}]}
{capture}/decoder/frame_list.csv            seg_id,frame_id
{capture}/decoder/head_pose/head_pose.zip   {frame:06d}.txt: 3x4 [R|t], head space -> world, millimetres
{capture}/decoder/image/cam{ID}.zip         cam{ID}/{frame:06d}.avif
{capture}/decoder/segmentation_parts/cam{ID}.zip   cam{ID}/{frame:06d}.png (0 = background)
```
K and T are stored transposed: K.T is the intrinsic matrix, T.T[:3] the OpenCV world-to-camera [R|t] in
millimetres, with pixel centres on integers. The calibration is for the full sensor (2668x4096); the
shipped images are 2x or 4x smaller, which `views.calibration_factor` works out (option `calib_factor`); the
intrinsics scale as Ava256's own loader scales them (`K[:2] / downsample`, integer pixel centres scaling: see
`views.opencv_rig`, scaling "centres").
Cameras are moved into head space with each frame's head pose (x_world = R_h x_head + t_h, so the head-space
world-to-camera is [R|t] @ [R_h|t_h]); without head_pose.zip they stay in the studio world. The subject's rig
at its first frame fixes one normalisation (`stages.capture.normalise`, metres by default) used for all frames.
Masks: segmentation label > 0 (everything but background); without segmentation_parts they are all ones.

Expression codes ship with nothing: the user supplies them (option `codes=DIR`, default ROOT/codes when it
exists). Per capture, `DIR/{capture}.npz` (or `DIR/{subject id}.npz`) with `codes` (N, D) and `frames` (N,)
frame ids, or `DIR/{capture}.npy` (N, D) with one row per frame_list.csv row. The space is named by option
`space` (default `ava256`) with D from the files. When codes exist, only frames that have one are used.
Options: codes, space, scale (metric|auto|number), head_radius (default 0.17, after scaling), calib_factor.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stages.cameras import Cameras
from stages.capture.normalise import Normalisation
from stages.datasets import media
from stages.datasets.base import HeadDataset
from stages.datasets.views import (
    apply_crop,
    calibration_factor,
    crop_map,
    cropped_rig,
    fit_rig,
    head_crops,
    opencv_rig,
    parse_radius,
    parse_scale,
)
from stages.errors import BadInput
from stages.io import read_json

MM = 0.001


def _decoder_dirs(root: Path) -> dict[str, Path]:
    """capture name -> its decoder folder, for ROOT = a folder of captures, a capture or a decoder folder."""
    if (root / "camera_calibration.json").is_file():
        return {root.parent.name if root.name == "decoder" else root.name: root}
    if (root / "decoder" / "camera_calibration.json").is_file():
        return {root.name: root / "decoder"}
    return {p.parent.parent.name: p.parent for p in sorted(root.glob("*/decoder/camera_calibration.json"))}


def subject_id(capture: str) -> str:
    """The subject id inside a capture name (`20210223--1023--AVW368` or `m--20210223--1023--AVW368--GHS`)."""
    parts = [p for p in capture.split("--") if p]
    if parts and parts[-1].upper() == "GHS":
        parts = parts[:-1]
    return parts[-1] if parts else capture


class Ava256Dataset(HeadDataset):
    """Ava256 captures; subjects are capture folder names."""

    kind = "ava256"
    OPTIONS = ("codes", "space", "scale", "head_radius", "calib_factor")

    def __init__(self, root: str | Path, size: int, options: dict[str, str] | None = None):
        super().__init__(root, size, options)
        self._dirs = _decoder_dirs(self.root)
        if not self._dirs:
            raise BadInput("no Ava256 capture here (expected */decoder/camera_calibration.json)", self.root)
        self.scale = parse_scale(self.option("scale"))
        self.head_radius = parse_radius(self.option("head_radius"))
        codes = self.option("codes")
        self.codes_dir = Path(codes) if codes else (self.root / "codes" if (self.root / "codes").is_dir() else None)
        if self.codes_dir is not None and not self.codes_dir.is_dir():
            raise BadInput("codes folder not found", self.codes_dir)
        self._subjects: dict[str, dict] = {}
        self._rigs: dict[tuple[str, int], tuple[Cameras, list, Cameras]] = {}

    # ----- metadata ----------------------------------------------------------------------------------------
    @property
    def expression_space(self) -> tuple[str, int]:
        for name in self.all_subjects():
            codes = self._subject(name)["codes"]
            if codes:
                return str(self.option("space", "ava256")), int(next(iter(codes.values())).shape[0])
        return "none", 0

    def all_subjects(self) -> list[str]:
        return sorted(self._dirs)

    def _read_calibration(self, path: Path) -> dict[str, dict]:
        raw = read_json(path)
        krt = raw.get("KRT") if isinstance(raw, dict) else None
        if not isinstance(krt, list) or not krt:
            raise BadInput("expected {\"KRT\": [...]} with one entry per camera", path)
        cams = {}
        for i, c in enumerate(krt):
            try:
                K = np.asarray(c["K"], np.float64).T
                w2c = np.asarray(c["T"], np.float64).T[:3, :4]
                dist = np.asarray(c.get("distortion", [0, 0, 0, 0]), np.float64).reshape(-1)
                cam_id = str(c["cameraId"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BadInput(f"camera entry {i} needs cameraId, K (3x3), T (4x4) and distortion ({exc})",
                               path) from exc
            if K.shape != (3, 3) or w2c.shape != (3, 4) or not (np.isfinite(K).all() and np.isfinite(w2c).all()):
                raise BadInput(f"camera {cam_id}: K must be 3x3 and T 4x4 (or 4x3), finite", path)
            cams[cam_id] = {"K": K, "w2c": w2c, "dist": dist}
        return cams

    def _read_frames(self, path: Path) -> list[int]:
        if not path.is_file():
            raise BadInput("frame_list.csv not found", path)
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        frames = []
        for row in rows:
            if len(row) < 2 or not row[1].strip().isdigit():
                continue  # the header, or a blank line
            frames.append(int(row[1]))
        if not frames:
            raise BadInput("no frames listed (expected rows seg_id,frame_id)", path)
        return frames

    def _read_codes(self, name: str, frames: list[int]) -> dict[int, np.ndarray]:
        if self.codes_dir is None:
            return {}
        for stem in (name, subject_id(name)):
            npz, npy = self.codes_dir / f"{stem}.npz", self.codes_dir / f"{stem}.npy"
            if npz.is_file():
                try:
                    with np.load(npz) as z:
                        codes, ids = np.asarray(z["codes"], np.float32), np.asarray(z["frames"]).astype(int)
                except (KeyError, ValueError, OSError) as exc:
                    raise BadInput(f"expected arrays 'codes' (N, D) and 'frames' (N,) ({exc})", npz) from exc
                if codes.ndim != 2 or ids.shape != (codes.shape[0],):
                    raise BadInput(f"'codes' {codes.shape} and 'frames' {ids.shape} do not pair up", npz)
                path = npz
            elif npy.is_file():
                try:
                    codes = np.asarray(np.load(npy, allow_pickle=False), np.float32)
                except (ValueError, OSError) as exc:
                    raise BadInput(f"not a readable .npy array ({exc})", npy) from exc
                if codes.ndim != 2 or codes.shape[0] != len(frames):
                    raise BadInput(f"expected ({len(frames)}, D) codes, one per frame_list.csv row, got "
                                   f"{codes.shape}", npy)
                ids, path = np.asarray(frames), npy
            else:
                continue
            if not np.isfinite(codes).all():
                raise BadInput("codes contain NaN or Inf", path)
            return {int(f): c for f, c in zip(ids, codes, strict=True)}
        return {}

    def _subject(self, name: str) -> dict:
        if name in self._subjects:
            return self._subjects[name]
        self.check_subject(name)
        dec = self._dirs[name]
        calib_path = dec / "camera_calibration.json"
        calib = self._read_calibration(calib_path)
        cam_ids = [c for c in calib if (dec / "image" / f"cam{c}.zip").is_file()]
        if not cam_ids:
            raise BadInput("no image/cam{ID}.zip for any calibrated camera", dec)
        frames = self._read_frames(dec / "frame_list.csv")
        codes = self._read_codes(name, frames)
        if codes:
            frames = [f for f in frames if f in codes]
            if not frames:
                raise BadInput("no frame of frame_list.csv has a code", self.codes_dir)
        first = media.read_zip_image(dec / "image" / f"cam{cam_ids[0]}.zip", f"cam{cam_ids[0]}/{frames[0]:06d}.avif")
        height, width = first.shape[:2]
        factors = {c: calibration_factor(calib[c]["K"][0, 2], width, self.option("calib_factor")) for c in cam_ids}
        s = {"dir": dec, "calib": calib, "cam_ids": cam_ids, "frames": sorted(set(frames)), "frame_set": set(frames),
             "codes": codes,
             "width": width, "height": height, "factors": factors,
             "has_pose": (dec / "head_pose" / "head_pose.zip").is_file(),
             "has_seg": all((dec / "segmentation_parts" / f"cam{c}.zip").is_file() for c in cam_ids)}
        s["norm"] = fit_rig(self._raw_rig(s, s["frames"][0]), self.scale, str(calib_path))
        self._subjects[name] = s
        return s

    def _head_pose(self, s: dict, frame: int) -> np.ndarray:
        """4x4 head -> world transform of a frame (identity without head_pose.zip), millimetres."""
        H = np.eye(4)
        if s["has_pose"]:
            path = s["dir"] / "head_pose" / "head_pose.zip"
            text = media.read_member(path, f"{frame:06d}.txt").decode()
            try:
                H[:3, :4] = np.array([[float(v) for v in line.split()] for line in text.splitlines() if line.strip()])
            except ValueError as exc:
                raise BadInput(f"frame {frame}: head pose must be 3x4 numbers ({exc})", path) from exc
        return H

    def _raw_rig(self, s: dict, frame: int) -> Cameras:
        """Every camera at a frame in head space (metres, OpenGL), full image size, before normalisation."""
        H = self._head_pose(s, frame)
        ids = s["cam_ids"]
        w2c = np.stack([s["calib"][c]["w2c"] @ H for c in ids])
        return opencv_rig(w2c, np.stack([s["calib"][c]["K"] for c in ids]), s["width"], s["height"],
                          np.array([s["factors"][c] for c in ids]), MM, scaling="centres")

    def _rig(self, name: str, t: int) -> tuple[Cameras, list, Cameras]:
        """(normalised full-image cameras, head crops, cropped cameras) at a frame; a few frames are cached."""
        key = (name, int(t))
        if key not in self._rigs:
            s = self._subject(name)
            if int(t) not in s["frame_set"]:
                where = " with a code" if s["codes"] else ""
                raise BadInput(f"capture {name} has no frame {t} (in frame_list.csv{where})",
                               s["dir"] / "frame_list.csv")
            full = s["norm"].apply(self._raw_rig(s, int(t)))
            crops = head_crops(full, self.head_radius, str(s["dir"] / "camera_calibration.json"))
            if len(self._rigs) > 64:
                self._rigs.pop(next(iter(self._rigs)))
            self._rigs[key] = (full, crops, cropped_rig(full, crops, self.size))
        return self._rigs[key]

    # ----- the HeadDataset interface -----------------------------------------------------------------------
    def timesteps(self, subject: str) -> list[int]:
        return list(self._subject(subject)["frames"])

    def camera_names(self, subject: str) -> list[str]:
        return list(self._subject(subject)["cam_ids"])

    def cameras(self, subject: str, t: int) -> Cameras:
        return self._rig(subject, t)[2]

    def has_masks(self, subject: str) -> bool:
        return bool(self._subject(subject)["has_seg"])

    def normalisation(self, subject: str) -> Normalisation:
        """Head space in metres (at the subject's first frame's rig) -> our world."""
        return self._subject(subject)["norm"]

    def describe(self, subject: str, t: int) -> str:
        return f"{subject} frame {t}"

    def load(self, subject: str, t: int, cam_idx: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        s = self._subject(subject)
        full, crops, _ = self._rig(subject, t)
        cam_id = s["cam_ids"][cam_idx]
        img = media.read_zip_image(s["dir"] / "image" / f"cam{cam_id}.zip", f"cam{cam_id}/{int(t):06d}.avif")
        if img.shape[:2] != (s["height"], s["width"]):
            raise BadInput(f"frame {t} is {img.shape[1]}x{img.shape[0]}, other frames {s['width']}x{s['height']}",
                           s["dir"] / "image" / f"cam{cam_id}.zip")
        rgb = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
        if s["has_seg"]:
            seg_zip = s["dir"] / "segmentation_parts" / f"cam{cam_id}.zip"
            seg = media.read_zip_image(seg_zip, f"cam{cam_id}/{int(t):06d}.png")[..., 0]
            mask = (seg > 0).astype(np.float32)
            if mask.shape != rgb.shape[:2]:
                mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        else:
            mask = np.ones(rgb.shape[:2], np.float32)
        cmap = crop_map(full[cam_idx], crops[cam_idx], self.size, s["width"], s["height"], s["calib"][cam_id]["dist"])
        out_rgb, out_mask = apply_crop(rgb, cmap), apply_crop(mask[..., None], cmap)[..., 0]
        return np.clip(out_rgb, 0, 1), np.clip(out_mask * cmap.valid, 0, 1)

    def codes(self, subject: str, t: int) -> np.ndarray | None:
        c = self._subject(subject)["codes"].get(int(t))
        return None if c is None else c.copy()

