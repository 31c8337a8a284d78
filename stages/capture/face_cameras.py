"""Cameras from the face itself: photos or video frames of a head with no calibration become posed pinhole
cameras in the head-centred world of SPEC section 2 (metres, +y up, the face along +z, +x the subject's left,
the head's centre at the origin).

The head is the calibration object. MediaPipe's canonical face mesh (468 vertices, centimetres, inside
`face_landmarker.task`) is the rigid 3D model; the landmarker's 2D landmarks of each view are its observations.
Only landmarks that do not move with expression are used (forehead, nose bridge and tip, eye corners, temples;
not lips, jaw or brows). For a given focal, each view's pose is a PnP solve (OpenCV, Levenberg-Marquardt
refined); the focal is the one shared by all views (as a fraction of the image diagonal, so portrait and
landscape photos from one phone agree) that minimises the summed squared reprojection error. A face is ~10 cm
deep, so the focal is only weakly observable from a frontal view at 0.5 m; a weak prior toward MediaPipe's
nominal 63 degrees vertical FOV keeps the estimate stable when the views do not constrain it.

Focal sources, in order: an explicit `focal_px`, `fov_deg` (vertical field of view), EXIF 35 mm equivalent
focal lengths (when every view has one), else the estimate. The canonical model has the average face's size,
so "metres" are the average head's; the world is as metric as the face is average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from stages.errors import BadInput

# Landmarks that do not move with expression (MediaPipe face-mesh vertex ids).
RIGID_LANDMARKS = {
    "forehead": (10, 151, 9, 108, 337, 67, 297, 109, 338, 69, 299),
    "nose": (168, 6, 197, 195, 5, 4, 1, 45, 275),
    "eye_corners": (33, 133, 362, 263),
    "temples": (127, 356, 162, 389, 21, 251, 71, 301),
}
RIGID_IDS = tuple(i for ids in RIGID_LANDMARKS.values() for i in ids)
# The head's centre in the canonical face frame (metres): on the mid-plane, ~8.3 cm behind the nose bridge and
# 0.8 cm below it, between the ears, as the synthetic heads of stages.synth place their origin.
HEAD_CENTRE_CANONICAL = np.array([0.0, 0.0247, -0.0306])
NOMINAL_VFOV_DEG = 63.0  # the virtual camera MediaPipe solves its facial transform for
FOCAL_PRIOR_WEIGHT = 1e-5  # (residual / face size)^2 per log(focal)^2: only breaks ties when views are flat
DIAG_35MM = math.hypot(36.0, 24.0)  # a full-frame sensor's diagonal, mm
DISAGREE_FACTOR = 3.0  # a view whose residual is this many times the median is flagged...
DISAGREE_FLOOR = 0.04  # ...when it also exceeds this fraction of the face's size


@dataclass
class FaceCameras:
    """Cameras solved from faces. c2w: (N, 4, 4) OpenGL camera-to-world in the head-centred world (metres);
    intrinsics per view in pixels (pixel centres at +0.5); residual_px: per-view RMS reprojection error of the
    rigid landmarks; focal_source: given | fov | exif | estimated; vfov_deg: the first view's vertical FOV."""

    c2w: np.ndarray
    fx: np.ndarray
    fy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    residual_px: np.ndarray
    residual_overall_px: float
    focal_source: str
    vfov_deg: float
    rotations: np.ndarray  # (N, 3, 3) head rotation in each camera (canonical -> OpenCV camera)
    warnings: list[str] = field(default_factory=list)

    @property
    def focal_px(self) -> np.ndarray:
        return self.fy

    def yaw_pitch_deg(self) -> np.ndarray:
        """(N, 2) yaw (camera toward the subject's left is +) and pitch (camera above is +) of each camera as
        seen from the head, degrees."""
        pos = self.c2w[:, :3, 3]
        yaw = np.degrees(np.arctan2(pos[:, 0], pos[:, 2]))
        pitch = np.degrees(np.arctan2(pos[:, 1], np.hypot(pos[:, 0], pos[:, 2])))
        return np.stack([yaw, pitch], 1)


@lru_cache(maxsize=1)
def canonical_mesh(model: str | None = None) -> np.ndarray:
    """MediaPipe's canonical face mesh vertices (468, 3) in metres (+x subject's left, +y up, +z out of the
    face), from `face_landmarker.task` (stages.track.canonical_face reads it)."""
    from stages.track.canonical_face import load_canonical_face
    from stages.track.landmarker import landmarker_model_path

    path = landmarker_model_path(Path(model) if model else None)
    return load_canonical_face(path).vertices.astype(np.float64) / 100.0


def focal_from_vfov(vfov_deg: float, height: float) -> float:
    return (height / 2.0) / math.tan(math.radians(vfov_deg) / 2.0)


def vfov_from_focal(focal: float, height: float) -> float:
    return math.degrees(2.0 * math.atan((height / 2.0) / focal))


def focal_from_35mm(f35: float, width: float, height: float) -> float:
    """Pixels from a 35 mm equivalent focal length (defined on the diagonal, so orientation does not matter)."""
    return f35 * math.hypot(width, height) / DIAG_35MM


def _solve_view(obj: np.ndarray, uv: np.ndarray, f: float, w: float, h: float,
                guess: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """PnP for one view: (rvec, tvec, RMS px). Pixel-corner coordinates, principal point at the centre."""
    K = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1.0]])
    if guess is None:
        ok, rvec, tvec = cv2.solvePnP(obj, uv, K, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [0.5]])
    else:
        rvec, tvec = guess[0].copy(), guess[1].copy()
    rvec, tvec = cv2.solvePnPRefineLM(obj, uv, K, None, rvec, tvec,
                                      (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 1e-10))
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - uv) ** 2, axis=1))))
    return rvec, tvec, rms


def _face_size(uv: np.ndarray) -> float:
    """Distance between the outer eye corners in pixels: the scale residuals are judged against."""
    return float(np.linalg.norm(uv[RIGID_IDS.index(33)] - uv[RIGID_IDS.index(263)])) + 1e-6


def solve_face_cameras(detections: Sequence, image_sizes: Sequence[tuple[int, int]],
                       focal_px: float | Sequence[float] | None = None,
                       exif_focal35: Sequence[float | None] | None = None,
                       fov_deg: float | None = None) -> FaceCameras:
    """Solve one camera per detection (stages.track.landmarker.FaceResult, or anything with `.landmarks`
    (478|468, >=2) in pixels); `image_sizes` are (width, height) per view. See the module docstring."""
    if len(detections) == 0:
        raise BadInput("no faces to solve cameras from")
    if len(detections) != len(image_sizes):
        raise ValueError("one image size per detection")
    obj = canonical_mesh()[list(RIGID_IDS)]
    uvs = [np.asarray(d.landmarks, np.float64)[list(RIGID_IDS), :2] for d in detections]
    sizes = [(float(w), float(h)) for w, h in image_sizes]
    diags = np.array([math.hypot(w, h) for w, h in sizes])
    scales = np.array([_face_size(uv) for uv in uvs])

    def solve_all(focals: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        return [_solve_view(obj, uv, float(f), w, h, None) for uv, f, (w, h) in zip(uvs, focals, sizes, strict=True)]

    if focal_px is not None:
        focals = np.broadcast_to(np.asarray(focal_px, np.float64), (len(uvs),)).copy()
        source = "given"
    elif fov_deg is not None:
        if not 5.0 <= fov_deg <= 150.0:
            raise BadInput(f"--fov must be between 5 and 150 degrees, got {fov_deg}")
        focals = np.array([focal_from_vfov(fov_deg, h) for _, h in sizes])
        source = "fov"
    elif exif_focal35 is not None and len(exif_focal35) == len(uvs) and all(
            f is not None and f > 0 for f in exif_focal35):
        focals = np.array([focal_from_35mm(float(f), w, h)  # type: ignore[arg-type]
                           for f, (w, h) in zip(exif_focal35, sizes, strict=True)])
        source = "exif"
    else:
        focals = _estimate_focals(solve_all, diags, sizes, scales)
        source = "estimated"
    sols = solve_all(focals)
    return _assemble(sols, focals, sizes, scales, source)


def _estimate_focals(solve_all, diags: np.ndarray, sizes: list[tuple[float, float]],  # noqa: ANN001
                     scales: np.ndarray) -> np.ndarray:
    """The shared focal (f = k * diagonal) minimising the normalised squared residuals plus a weak prior."""
    k0 = focal_from_vfov(NOMINAL_VFOV_DEG, sizes[0][1]) / diags[0]

    def cost(logk: float) -> float:
        sols = solve_all(np.exp(logk) * diags)
        data = float(np.mean([(s[2] / sc) ** 2 for s, sc in zip(sols, scales, strict=True)]))
        return data + FOCAL_PRIOR_WEIGHT * (logk - math.log(k0)) ** 2

    lo, hi = math.log(0.35), math.log(3.0)  # about 140 .. 19 degrees across the diagonal
    grid = np.linspace(lo, hi, 17)
    costs = [cost(g) for g in grid]
    j = int(np.argmin(costs))
    a, b = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = cost(c), cost(d)
    for _ in range(20):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = cost(d)
    return np.exp((a + b) / 2) * diags


def _assemble(sols: list[tuple[np.ndarray, np.ndarray, float]], focals: np.ndarray,
              sizes: list[tuple[float, float]], scales: np.ndarray, source: str) -> FaceCameras:
    """PnP poses (canonical -> OpenCV camera) as OpenGL c2w in the head-centred world, plus the checks."""
    n = len(sols)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    rots = np.zeros((n, 3, 3))
    flip = np.diag([1.0, -1.0, -1.0])
    for i, (rvec, tvec, _) in enumerate(sols):
        R, _ = cv2.Rodrigues(rvec)
        rots[i] = R
        centre = -R.T @ tvec.reshape(3)
        c2w[i, :3, :3] = R.T @ flip
        c2w[i, :3, 3] = centre - HEAD_CENTRE_CANONICAL
    res = np.array([s[2] for s in sols])
    warnings = []
    rel = res / scales
    med = float(np.median(rel))
    bad = [i for i in range(n) if n >= 2 and rel[i] > max(DISAGREE_FACTOR * med, DISAGREE_FLOOR)]
    if bad:
        warnings.append(f"the face in view(s) {bad} does not fit the others (reprojection error "
                        f"{', '.join(f'{res[i]:.1f}' for i in bad)} px against a median of "
                        f"{float(np.median(res)):.1f} px): different people, a changed zoom or a moving face?")
    ahead = np.array([-(c2w[i, :3, 2] @ (np.zeros(3) - c2w[i, :3, 3])) for i in range(n)])
    if np.any(ahead <= 0):
        raise BadInput("a solved camera does not face the head; the face detections are inconsistent")
    return FaceCameras(c2w=c2w, fx=focals.copy(), fy=focals.copy(),
                       cx=np.array([w / 2.0 for w, _ in sizes]), cy=np.array([h / 2.0 for _, h in sizes]),
                       residual_px=res, residual_overall_px=float(np.sqrt(np.mean(res ** 2))),
                       focal_source=source, vfov_deg=vfov_from_focal(float(focals[0]), sizes[0][1]),
                       rotations=rots, warnings=warnings)
