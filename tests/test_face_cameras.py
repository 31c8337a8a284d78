"""Cameras from faces (stages.capture.face_cameras) and offline person masks (stages.capture.segment): exact
recovery on projected canonical meshes, the world's axes and centre, the disagreement warning, and the real
dev frames of ../shared/real when they are there."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")

from stages.capture import segment  # noqa: E402
from stages.capture.face_cameras import (  # noqa: E402
    HEAD_CENTRE_CANONICAL,
    canonical_mesh,
    focal_from_vfov,
    solve_face_cameras,
)
from stages.errors import BadInput  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "real" / "cases"


def _rot(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Head rotation in an OpenCV camera: the head turned by yaw about +y, then pitched about +x."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    flip = np.diag([1.0, -1.0, -1.0])  # canonical (+y up, +z toward the camera) -> OpenCV (y down, z ahead)
    return flip @ rx @ ry


def _fake_views(poses: list[tuple[float, float]], vfov: float, dist: float, size=(480, 640), noise=0.0, seed=0):
    """Detections made by projecting the canonical mesh through known cameras (pixel-corner coordinates)."""
    mesh = canonical_mesh()
    w, h = size
    f = focal_from_vfov(vfov, h)
    rng = np.random.default_rng(seed)
    dets = []
    for yaw, pitch in poses:
        R = _rot(yaw, pitch)
        cam = mesh @ R.T + np.array([0.0, 0.0, dist])  # the face centred in front of the camera
        uv = f * cam[:, :2] / cam[:, 2:3] + np.array([w / 2, h / 2])
        uv = uv + noise * rng.normal(size=uv.shape)
        dets.append(SimpleNamespace(landmarks=np.concatenate([uv, cam[:, 2:3]], 1)))
    return dets, [size] * len(poses), f


def test_recovers_focal_and_poses_from_exact_projections() -> None:
    dets, sizes, f = _fake_views([(0, 0), (35, 5), (-35, -5), (15, 15)], vfov=70.0, dist=0.45)
    cams = solve_face_cameras(dets, sizes)
    assert cams.focal_source == "estimated"
    assert abs(cams.fy[0] / f - 1) < 0.01, cams.fy
    assert cams.residual_overall_px < 0.05
    # The first camera is straight in front of the head: on +z at the face distance plus the head centre's depth.
    expected = np.array([0.0, 0.0, 0.45]) - HEAD_CENTRE_CANONICAL
    assert np.allclose(cams.c2w[0, :3, 3], expected, atol=2e-3), cams.c2w[0, :3, 3]
    # The head turned to its left by 35 degrees: the camera sits on the subject's right (-x) of the head.
    yaw = cams.yaw_pitch_deg()[:, 0]
    assert yaw[1] < -20 and yaw[2] > 20
    # OpenGL: the camera looks along its -z, i.e. toward the head.
    for i in range(4):
        to_head = -cams.c2w[i, :3, 3]
        assert to_head @ -cams.c2w[i, :3, 2] > 0.99 * np.linalg.norm(to_head) * 0.9


def test_fov_and_exif_override_the_estimate() -> None:
    dets, sizes, f = _fake_views([(0, 0), (30, 0)], vfov=70.0, dist=0.45)
    given = solve_face_cameras(dets, sizes, fov_deg=50.0)
    assert given.focal_source == "fov" and abs(given.vfov_deg - 50.0) < 1e-6
    assert given.residual_overall_px > 0.5  # the wrong focal cannot fit the perspective exactly
    exif = solve_face_cameras(dets, sizes, exif_focal35=[26.0, 26.0])
    assert exif.focal_source == "exif"
    assert abs(exif.fy[0] - 26.0 * math.hypot(480, 640) / math.hypot(36, 24)) < 1e-6
    with pytest.raises(BadInput, match="--fov"):
        solve_face_cameras(dets, sizes, fov_deg=200.0)


def test_warns_when_one_view_does_not_fit() -> None:
    dets, sizes, _ = _fake_views([(0, 0), (20, 0), (-20, 0), (10, 5)], vfov=65.0, dist=0.5, noise=0.3)
    assert not solve_face_cameras(dets, sizes).warnings
    other = dets[3].landmarks.copy()
    other[:, 0] = (other[:, 0] - 240) * 1.25 + 240  # a face 25% wider: another person, or a stretched photo
    dets[3] = SimpleNamespace(landmarks=other)
    warned = solve_face_cameras(dets, sizes).warnings
    assert warned and "view(s) [3]" in warned[0]


def _real_case(name: str) -> Path:
    case = REAL / name
    if not case.is_dir():
        pytest.skip(f"the real dev cases are not at {REAL} (../shared/real is absent)")
    return case


def test_real_frames_reproject_within_a_few_pixels() -> None:
    from PIL import Image

    from stages.track.landmarker import detect, open_landmarker

    case = _real_case("case_lp_d12")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((case / "src" / "images").glob("*.png"))]
    with open_landmarker() as lm:
        dets = [detect(lm, im) for im in images]
    cams = solve_face_cameras(dets, [(im.shape[1], im.shape[0]) for im in images])
    assert cams.residual_overall_px < 5.0
    # Same head rotations as the case's own cameras (MediaPipe's transform at 63 degrees), within a few degrees.
    tf = json.loads((case / "src" / "transforms.json").read_text())
    for i, fr in enumerate(tf["frames"]):
        r_case = np.asarray(fr["transform_matrix"])[:3, :3]
        cos = (np.trace(r_case.T @ cams.c2w[i, :3, :3]) - 1) / 2
        assert math.degrees(math.acos(min(1.0, cos))) < 6.0


def test_person_mask_keeps_face_and_hair_on_clutter() -> None:
    from PIL import Image
    from skimage import data

    case = _real_case("case_lp_d3")
    img = np.asarray(Image.open(case / "src" / "images" / "000.png").convert("RGB"))
    ref = np.asarray(Image.open(case / "src" / "masks" / "000.png"), np.float32)
    ref = (ref[..., 0] if ref.ndim == 3 else ref) / 255.0
    bg = np.asarray(Image.fromarray(data.coffee()).resize(img.shape[1::-1]))
    comp = (img * ref[..., None] + bg * (1 - ref[..., None])).astype(np.uint8)
    if segment.segmenter_name() != "mediapipe-selfie":
        pytest.skip("the selfie segmentation model is not installed (make setup extracts it)")
    m = segment.person_mask(comp)
    assert m.dtype == np.float32 and m.shape == ref.shape
    inter = ((m > 0.5) & (ref > 0.5)).sum()
    union = ((m > 0.5) | (ref > 0.5)).sum()
    assert inter / union > 0.9


def test_grabcut_fallback_finds_a_centred_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment, "_available", lambda: False)
    assert segment.segmenter_name() == "grabcut"
    h, w = 120, 100
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((xx - 50) / 28.0) ** 2 + ((yy - 66) / 38.0) ** 2 < 1
    rng = np.random.default_rng(0)
    img = np.where(blob[..., None], [200, 150, 120], [40, 90, 60]) + rng.integers(-10, 10, (h, w, 3))
    m = segment.person_mask(img.astype(np.uint8))
    assert ((m > 0.5) == blob).mean() > 0.95


def test_install_model_extracts_from_a_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "mediapipe-0.10.14-fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(segment.WHEEL_MEMBER, b"tflite-bytes")
        zf.writestr("mediapipe/other.py", b"")
    out = segment.install_model(wheel, tmp_path / "share" / segment.MODEL_NAME)
    assert out.read_bytes() == b"tflite-bytes"
