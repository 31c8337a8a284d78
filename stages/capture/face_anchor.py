"""Where the head is in a calibrated source's world, from the face in its photos.

`normalise` centres the world on the point closest to every optical axis. That is the head for a studio rig,
but not for a phone or a video whose cameras all face the same way (parallel axes: the point is undefined) or
whose axes miss the head. Here the face landmarker runs on each photo, the canonical face mesh is posed in each
camera by PnP with the camera's own intrinsics (and lens distortion), and each view gives the head centre and
the head's axes in that camera; the source's extrinsics carry them into the source world. Views are combined
by least squares over the head centre and one scale factor s (source units per metre of the average face),
which the camera baseline pins down; when the cameras are too close together to pin it (parallel views from
one spot) the source is taken as metric (s = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stages.capture.face_cameras import HEAD_CENTRE_CANONICAL, RIGID_IDS, canonical_mesh
from stages.capture.imaging import opencv_K
from stages.capture.sources import SourceView
from stages.io import read_image, to_uint8

MIN_BASELINE = 0.1  # camera spread / face distance below which the scale is not observable
MIN_FACE_PX = 20.0  # outer eye corners closer than this: too small to trust (and detector false positives)
MAX_FIT = 0.08  # PnP RMS residual / eye-corner distance above which the "face" does not fit a face


@dataclass
class HeadAnchor:
    """The head in source coordinates: its centre, its axes (rows: subject's left, up, face direction) and the
    source units per metre; `views` is how many photos showed a face."""

    centre: np.ndarray
    axes: np.ndarray
    units_per_metre: float
    views: int


def _view_pose(view: SourceView, lm) -> tuple[np.ndarray, np.ndarray] | None:  # noqa: ANN001
    """(head centre in the camera's OpenCV frame, metres; canonical -> camera rotation) or None without a face."""
    from stages.capture.face_source import _detect, face_size_px

    img = view.image if view.image is not None else to_uint8(read_image(view.image_path)[..., :3])
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    det = _detect(lm, np.ascontiguousarray(img[..., :3]))
    if det is None or face_size_px(det) < MIN_FACE_PX:
        return None
    uv = np.asarray(det.landmarks, np.float64)[list(RIGID_IDS), :2] - 0.5  # OpenCV: pixel centres on integers
    obj = canonical_mesh()[list(RIGID_IDS)]
    K = opencv_K(view.camera)
    dist = view.distortion if view.distorted else None
    ok, rvec, tvec = cv2.solvePnP(obj, uv, K, dist, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(obj, uv, K, dist, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, dist)
    rms = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - uv) ** 2, axis=1))))
    if rms > MAX_FIT * face_size_px(det) or tvec[2, 0] <= 0:
        return None
    R, _ = cv2.Rodrigues(rvec)
    return R @ HEAD_CENTRE_CANONICAL + tvec.reshape(3), R


def face_anchor(views: list[SourceView]) -> HeadAnchor | None:
    """The head found by the face in the source's photos, or None (no face, or no face tracker installed)."""
    try:
        from stages.track.landmarker import open_landmarker

        with open_landmarker() as lm:
            poses = [(_view_pose(v, lm), v) for v in views]
    except Exception:  # noqa: BLE001 (a missing or broken tracker, or an unreadable photo: no anchor, as before)
        return None
    found = [(p, v) for p, v in poses if p is not None]
    if not found or 2 * len(found) < len(views):  # a face in a minority of photos is no head capture
        return None
    flip = np.diag([1.0, -1.0, -1.0])
    C, q, A = [], [], []
    for (p, R), v in found:
        c2w = v.camera.c2w[0].detach().cpu().double().numpy()
        rw = c2w[:3, :3] @ flip  # OpenCV camera -> source world rotation
        C.append(c2w[:3, 3])
        q.append(rw @ p)
        A.append(rw @ R)  # canonical axes in the source world (columns)
    C, q = np.array(C), np.array(q)
    dq, dC = q - q.mean(0), C - C.mean(0)
    spread = float(np.sqrt((dq ** 2).sum(1).mean()))
    s = 1.0
    if len(found) > 1 and spread > MIN_BASELINE * float(np.linalg.norm(q, axis=1).mean()):
        s_fit = -float((dC * dq).sum() / (dq ** 2).sum())
        if np.isfinite(s_fit) and s_fit > 0:
            s = s_fit
    centre = (C + s * q).mean(0)
    u, _, vt = np.linalg.svd(np.sum(A, axis=0))
    axes_cols = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    return HeadAnchor(centre, axes_cols.T, s, len(found))
