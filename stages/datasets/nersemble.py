"""NeRSemble in its published layouts, read lazily (videos are decoded one requested frame at a time).

ROOT is a folder of participants `{pid}` (or one participant's folder). Two layouts are recognised per
participant:
- v2 / benchmark: `{pid}/calibration/camera_params.json`, `{pid}/sequences/{SEQ}/images/cam_{serial}.mp4`,
  optional alpha maps `{pid}/sequences/{SEQ}/alpha_maps/cam_{serial}.mp4` (benchmark layout) and FLAME tracking
  `{pid}/sequences/{SEQ}/**/flame2023_tracking_v2.npz` (or `flame2023_tracking.npz`).
- v1 frame folders: `{pid}/camera_params.json`, `{pid}/sequences/{SEQ}/frame_{t:05d}/images-2x/cam_{serial}.png`
  with optional `alpha_map/cam_{serial}.png` beside `images-2x/`.
camera_params.json = {"world_2_cam": {serial: 4x4 OpenCV world-to-camera, metres}, "intrinsics": 3x3 shared, or
{serial: 3x3}} (optional "distortion": {serial: [k1, k2, p1, p2(, k3)]}). The intrinsics may be calibrated for
a larger image than the one shipped (`views.calibration_factor`, option `calib_factor`). OpenCV pixel centres
are on integers (0.5 is added, SPEC section 2). The rig is normalised once per participant
(`stages.capture.normalise`: the cameras' look-at point becomes the origin, their up +y, the side they look from
+z; metres by default).

Timesteps span all of a participant's sequences: t = 100000 * (index of the sequence in sorted order) + frame.
`describe` and `locate` turn t back into (sequence, frame); `timestep_of(subject, sequence, frame)` goes the
other way. With FLAME tracking, the timesteps of a sequence are its tracked frames and the code of a frame is
the `flame` space: the 100 FLAME expression coefficients followed by the 3 jaw rotation values (axis-angle,
radians) = 103 numbers, channel names in FLAME_CHANNELS. Sequences without tracking have no codes.
With option `head_pose=flame`, the cameras are moved into the tracked head's space frame by frame, as Ava256's
are (the tracking's model-to-world is x_world = scale * R x_model + t with R = `rotation_matrices`, so the head
space is the FLAME model space times its scale, in metres, and the world-to-camera becomes [R_w|t_w] @ [R|t]);
only tracked frames are used then, and the rig at the first of them fixes the normalisation.
Options: sequences (comma-separated names to keep), stride (keep every N-th frame), scale, head_radius,
calib_factor, head_pose (none | flame).
"""

from __future__ import annotations

import re
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

SEQ_STRIDE = 100_000  # t = SEQ_STRIDE * sequence index + frame
FLAME_EXPRESSION, FLAME_JAW = 100, 3
FLAME_CHANNELS = [f"expr_{i:03d}" for i in range(FLAME_EXPRESSION)] + ["jaw_rx", "jaw_ry", "jaw_rz"]
TRACKING_NAMES = ("flame2023_tracking_v2.npz", "flame2023_tracking.npz")
_FRAME_DIR = re.compile(r"^frame_(\d+)$")
_SKIP_SEQUENCES = {"BACKGROUND"}


def _calibration_file(pdir: Path) -> Path | None:
    for cand in (pdir / "calibration" / "camera_params.json", pdir / "camera_params.json"):
        if cand.is_file():
            return cand
    return None


def _participants(root: Path) -> dict[str, Path]:
    if _calibration_file(root) is not None and (root / "sequences").is_dir():
        return {root.name: root}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and _calibration_file(p) is not None
            and (p / "sequences").is_dir()} if root.is_dir() else {}


def read_tracking(path: Path, poses: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames (T,), codes (T, 103), head-to-world [R|t] (T, 4, 4) in metres or None) from a FLAME tracking
    file: the code is expression[:, :100] then jaw (T, 3); poses only when asked for."""
    try:
        with np.load(path) as z:
            expr, jaw = np.asarray(z["expression"], np.float32), np.asarray(z["jaw"], np.float32)
            frames = np.asarray(z["frames"]).astype(int) if "frames" in z.files else np.arange(len(expr))
            pose = None
            if poses:
                pose = np.tile(np.eye(4), (len(expr), 1, 1))
                pose[:, :3, :3] = np.asarray(z["rotation_matrices"], np.float64).reshape(len(expr), 3, 3)
                pose[:, :3, 3] = np.asarray(z["translation"], np.float64).reshape(len(expr), 3)
    except (KeyError, ValueError, OSError) as exc:
        need = "'expression', 'jaw', 'rotation_matrices' and 'translation'" if poses else "'expression' and 'jaw'"
        raise BadInput(f"expected FLAME tracking with {need} arrays ({exc})", path) from exc
    if expr.ndim != 2 or expr.shape[1] < FLAME_EXPRESSION or jaw.shape != (len(expr), FLAME_JAW) \
            or frames.shape != (len(expr),):
        raise BadInput(f"expression {expr.shape}, jaw {jaw.shape} and frames {frames.shape} do not fit "
                       f"(T, >={FLAME_EXPRESSION}), (T, 3), (T,)", path)
    codes = np.concatenate([expr[:, :FLAME_EXPRESSION], jaw], axis=1)
    if not np.isfinite(codes).all() or (pose is not None and not np.isfinite(pose).all()):
        raise BadInput("tracking contains NaN or Inf", path)
    return frames, codes, pose


class NeRSembleDataset(HeadDataset):
    """NeRSemble participants; subjects are participant folder names."""

    kind = "nersemble"
    OPTIONS = ("sequences", "stride", "scale", "head_radius", "calib_factor", "head_pose")

    def __init__(self, root: str | Path, size: int, options: dict[str, str] | None = None):
        super().__init__(root, size, options)
        self._dirs = _participants(self.root)
        if not self._dirs:
            raise BadInput("no NeRSemble participant here (expected {pid}/calibration/camera_params.json or "
                           "{pid}/camera_params.json, and {pid}/sequences/)", self.root)
        self.scale = parse_scale(self.option("scale"))
        self.head_radius = parse_radius(self.option("head_radius"))
        try:
            self.stride = max(1, int(self.option("stride", "1") or 1))
        except ValueError:
            raise BadInput(f"stride option must be an integer, got {self.option('stride')!r}") from None
        self.head_pose = self.option("head_pose", "none")
        if self.head_pose not in ("none", "flame"):
            raise BadInput(f"head_pose option must be none or flame, got {self.head_pose!r}")
        self._rigs: dict[tuple[str, int], tuple[Cameras, list, Cameras]] = {}
        wanted = self.option("sequences")
        self.only = {s for s in wanted.split(",") if s} if wanted else None
        self._subjects: dict[str, dict] = {}

    # ----- metadata ----------------------------------------------------------------------------------------
    @property
    def expression_space(self) -> tuple[str, int]:
        for name in self.all_subjects():
            if any(q["codes"] for q in self._subject(name)["seqs"]):
                return "flame", FLAME_EXPRESSION + FLAME_JAW
        return "none", 0

    def all_subjects(self) -> list[str]:
        return sorted(self._dirs)

    def _read_calibration(self, path: Path) -> dict[str, dict]:
        raw = read_json(path)
        w2c, intr = (raw.get("world_2_cam"), raw.get("intrinsics")) if isinstance(raw, dict) else (None, None)
        if not isinstance(w2c, dict) or not w2c or intr is None:
            raise BadInput("expected {\"world_2_cam\": {serial: 4x4}, \"intrinsics\": 3x3 or {serial: 3x3}}", path)
        dist = raw.get("distortion") or {}
        cams = {}
        for serial, m in w2c.items():
            try:
                K = np.asarray(intr[serial] if isinstance(intr, dict) else intr, np.float64)
                M = np.asarray(m, np.float64)
                d = np.asarray(dist.get(serial, [0, 0, 0, 0]), np.float64).reshape(-1)
            except (KeyError, TypeError, ValueError) as exc:
                raise BadInput(f"camera {serial}: no usable intrinsics or world_2_cam ({exc})", path) from exc
            finite = np.isfinite(K).all() and np.isfinite(M).all()
            if K.shape != (3, 3) or M.shape not in ((4, 4), (3, 4)) or not finite:
                raise BadInput(f"camera {serial}: intrinsics must be 3x3 and world_2_cam 4x4, finite", path)
            cams[str(serial)] = {"K": K, "w2c": M[:3, :4], "dist": d}
        return cams

    def _sequence(self, seq_dir: Path, serials: list[str]) -> dict | None:
        """What one sequence folder holds: its layout, frames, available cameras, masks and codes."""
        if (seq_dir / "images").is_dir():
            videos = {s for s in serials if (seq_dir / "images" / f"cam_{s}.mp4").is_file()}
            if not videos:
                return None
            track = next((p for n in TRACKING_NAMES for p in sorted(seq_dir.rglob(n))), None)
            codes: dict[int, np.ndarray] = {}
            poses: dict[int, np.ndarray] = {}
            posed = self.head_pose == "flame"
            if track is not None:
                frames_arr, code_arr, pose_arr = read_tracking(track, posed)
                codes = {int(f): c for f, c in zip(frames_arr, code_arr, strict=True)}
                if pose_arr is not None:
                    poses = {int(f): p for f, p in zip(frames_arr, pose_arr, strict=True)}
                frames = sorted(codes)
            elif posed:
                return None  # no tracking, no head pose: the sequence cannot be used in head space
            else:
                frames = list(range(media.video_length(seq_dir / "images" / f"cam_{sorted(videos)[0]}.mp4")))
            alpha = all((seq_dir / "alpha_maps" / f"cam_{s}.mp4").is_file() for s in videos)
            return {"layout": "v2", "dir": seq_dir, "frames": frames[:: self.stride], "serials": videos,
                    "alpha": alpha, "codes": codes, "poses": poses}
        frame_dirs = {int(m.group(1)): p for p in seq_dir.iterdir() if (m := _FRAME_DIR.match(p.name))}
        if not frame_dirs or self.head_pose == "flame":
            return None
        first = frame_dirs[min(frame_dirs)]
        pngs = {s for s in serials if (first / "images-2x" / f"cam_{s}.png").is_file()}
        if not pngs:
            return None
        alpha = all((first / "alpha_map" / f"cam_{s}.png").is_file() for s in pngs)
        return {"layout": "v1", "dir": seq_dir, "frames": sorted(frame_dirs)[:: self.stride], "serials": pngs,
                "alpha": alpha, "codes": {}, "frame_dirs": frame_dirs}

    def _subject(self, name: str) -> dict:
        if name in self._subjects:
            return self._subjects[name]
        self.check_subject(name)
        pdir = self._dirs[name]
        calib_path = _calibration_file(pdir)
        assert calib_path is not None
        calib = self._read_calibration(calib_path)
        names = sorted(p.name for p in (pdir / "sequences").iterdir() if p.is_dir() and p.name not in _SKIP_SEQUENCES)
        if self.only is not None:
            missing = sorted(self.only - set(names))
            if missing:
                raise BadInput(f"no sequence {missing[0]!r}", pdir / "sequences")
            names = [n for n in names if n in self.only]
        seqs = []
        for n in names:
            q = self._sequence(pdir / "sequences" / n, sorted(calib))
            if q is not None and q["frames"]:
                q["name"], q["frame_set"] = n, set(q["frames"])
                seqs.append(q)
        if not seqs:
            need = " and FLAME tracking (head_pose=flame)" if self.head_pose == "flame" else ""
            raise BadInput(f"no sequence with images/cam_{{serial}}.mp4 or frame_*/images-2x/ for a calibrated "
                           f"camera{need}", pdir / "sequences")
        serials = sorted(set.intersection(*(q["serials"] for q in seqs)))
        if not serials:
            raise BadInput("no camera is present in every sequence", pdir / "sequences")
        s = {"dir": pdir, "calib": calib, "calib_path": calib_path, "seqs": seqs, "serials": serials}
        height, width = self._read_rgb(s, 0, seqs[0]["frames"][0], serials[0]).shape[:2]
        factors = {c: calibration_factor(calib[c]["K"][0, 2], width, self.option("calib_factor")) for c in serials}
        s.update(width=width, height=height, factors=factors, maps={})
        first = seqs[0]["poses"].get(seqs[0]["frames"][0]) if self.head_pose == "flame" else None
        norm = fit_rig(self._raw_rig(s, first), self.scale, str(calib_path))
        s["norm"] = norm
        if self.head_pose == "none":
            full = norm.apply(self._raw_rig(s, None))
            crops = head_crops(full, self.head_radius, str(calib_path))
            s.update(full=full, crops=crops, rig=cropped_rig(full, crops, self.size))
        self._subjects[name] = s
        return s

    def _raw_rig(self, s: dict, pose: np.ndarray | None) -> Cameras:
        """The rig in NeRSemble's world, or in the head space of a head-to-world pose, before normalisation."""
        w2c = np.stack([s["calib"][c]["w2c"] for c in s["serials"]])
        if pose is not None:
            w2c = w2c @ pose
        return opencv_rig(w2c, np.stack([s["calib"][c]["K"] for c in s["serials"]]), s["width"], s["height"],
                          np.array([s["factors"][c] for c in s["serials"]]))

    def _frame_rig(self, subject: str, t: int) -> tuple[Cameras, list, Cameras]:
        """(normalised full-image cameras, head crops, cropped cameras) at a timestep."""
        s = self._subject(subject)
        self.locate(subject, t)
        if self.head_pose == "none":
            return s["full"], s["crops"], s["rig"]
        key = (subject, int(t))
        if key not in self._rigs:
            qi, frame = divmod(int(t), SEQ_STRIDE)
            full = s["norm"].apply(self._raw_rig(s, s["seqs"][qi]["poses"][frame]))
            crops = head_crops(full, self.head_radius, str(s["calib_path"]))
            if len(self._rigs) > 64:
                self._rigs.pop(next(iter(self._rigs)))
            self._rigs[key] = (full, crops, cropped_rig(full, crops, self.size))
        return self._rigs[key]

    # ----- timesteps ---------------------------------------------------------------------------------------
    def locate(self, subject: str, t: int) -> tuple[str, int]:
        """(sequence name, frame) of a timestep."""
        s = self._subject(subject)
        qi, frame = divmod(int(t), SEQ_STRIDE)
        if not 0 <= qi < len(s["seqs"]) or frame not in s["seqs"][qi]["frame_set"]:
            raise BadInput(f"participant {subject} has no timestep {t}", s["dir"] / "sequences")
        return s["seqs"][qi]["name"], frame

    def timestep_of(self, subject: str, sequence: str, frame: int) -> int:
        """The timestep of a sequence's frame (BadInput when that frame is not used)."""
        s = self._subject(subject)
        for qi, q in enumerate(s["seqs"]):
            if q["name"] == sequence:
                if int(frame) not in q["frame_set"]:
                    hint = " (frames with FLAME tracking only)" if q["codes"] else ""
                    raise BadInput(f"sequence {sequence} has no frame {frame}{hint}", q["dir"])
                return qi * SEQ_STRIDE + int(frame)
        raise BadInput(f"no sequence {sequence!r} (have {', '.join(q['name'] for q in s['seqs'])})",
                       s["dir"] / "sequences")

    def timesteps(self, subject: str) -> list[int]:
        return [qi * SEQ_STRIDE + f for qi, q in enumerate(self._subject(subject)["seqs"]) for f in q["frames"]]

    def normalisation(self, subject: str) -> Normalisation:
        """NeRSemble's world (metres) -> ours; with head_pose=flame, the tracked head's space (metres) -> ours."""
        return self._subject(subject)["norm"]

    def describe(self, subject: str, t: int) -> str:
        seq, frame = self.locate(subject, t)
        return f"{subject} {seq} frame {frame}"

    # ----- the HeadDataset interface -----------------------------------------------------------------------
    def camera_names(self, subject: str) -> list[str]:
        return list(self._subject(subject)["serials"])

    def cameras(self, subject: str, t: int) -> Cameras:
        return self._frame_rig(subject, t)[2]

    def has_masks(self, subject: str) -> bool:
        return all(q["alpha"] for q in self._subject(subject)["seqs"])

    def _read_rgb(self, s: dict, qi: int, frame: int, serial: str) -> np.ndarray:
        q = s["seqs"][qi]
        if q["layout"] == "v2":
            return media.read_video_frame(q["dir"] / "images" / f"cam_{serial}.mp4", frame)
        from stages.io import read_image

        img = read_image(q["frame_dirs"][frame] / "images-2x" / f"cam_{serial}.png")
        return img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)

    def _read_alpha(self, s: dict, qi: int, frame: int, serial: str) -> np.ndarray:
        q = s["seqs"][qi]
        if q["layout"] == "v2":
            return media.read_video_frame(q["dir"] / "alpha_maps" / f"cam_{serial}.mp4", frame)[..., 0]
        from stages.io import read_image

        return read_image(q["frame_dirs"][frame] / "alpha_map" / f"cam_{serial}.png")[..., 0]

    def load(self, subject: str, t: int, cam_idx: int) -> tuple[np.ndarray, np.ndarray]:
        s = self._subject(subject)
        self.locate(subject, t)
        qi, frame = divmod(int(t), SEQ_STRIDE)
        serial = s["serials"][cam_idx]
        rgb = self._read_rgb(s, qi, frame, serial)
        if rgb.shape[:2] != (s["height"], s["width"]):
            raise BadInput(f"{s['seqs'][qi]['name']} frame {frame} of camera {serial} is "
                           f"{rgb.shape[1]}x{rgb.shape[0]}, not {s['width']}x{s['height']}", s["seqs"][qi]["dir"])
        if s["seqs"][qi]["alpha"]:
            alpha = self._read_alpha(s, qi, frame, serial)
            if alpha.shape != rgb.shape[:2]:
                import cv2

                alpha = cv2.resize(alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        else:
            alpha = np.ones(rgb.shape[:2], np.float32)
        full, crops, _ = self._frame_rig(subject, t)
        cmap = s["maps"].get(cam_idx)
        if cmap is None:
            cmap = crop_map(full[cam_idx], crops[cam_idx], self.size, s["width"], s["height"],
                            s["calib"][serial]["dist"])
            if self.head_pose == "none":  # a static rig: one map per camera serves every frame
                s["maps"][cam_idx] = cmap
        out_rgb, out_alpha = apply_crop(rgb, cmap), apply_crop(alpha[..., None], cmap)[..., 0]
        return np.clip(out_rgb, 0, 1), np.clip(out_alpha * cmap.valid, 0, 1)

    def codes(self, subject: str, t: int) -> np.ndarray | None:
        s = self._subject(subject)
        self.locate(subject, t)
        qi, frame = divmod(int(t), SEQ_STRIDE)
        c = s["seqs"][qi]["codes"].get(frame)
        return None if c is None else c.copy()
