"""benchmarks/make_dev_cases.py: dev cases in the real-case layout, with cameras and crops that agree."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("make_dev_cases", ROOT / "benchmarks" / "make_dev_cases.py")
dev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dev)


def _project(c2w: np.ndarray, intr: dict, point: np.ndarray) -> np.ndarray:
    """Pixel of a world point for an OpenGL camera-to-world and nerfstudio-style intrinsics."""
    cam = np.linalg.inv(c2w) @ np.append(point, 1.0)
    x, y, z = cam[0], -cam[1], -cam[2]  # OpenGL -> OpenCV
    return np.array([intr["fl_x"] * x / z + intr["cx"], intr["fl_y"] * y / z + intr["cy"]])


def test_pose_camera_inverts_the_facial_transform_in_metres():
    angle = math.radians(20)
    rot = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    transform = np.eye(4)
    transform[:3, :3] = 1.3 * rot  # MediaPipe's matrix may carry a scale: dropped
    transform[:3, 3] = [2.0, -1.0, -40.0]  # centimetres
    c2w = dev.pose_camera(transform)
    np.testing.assert_allclose(c2w[:3, :3], rot.T, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(c2w[:3, 3]), math.sqrt(4 + 1 + 1600) / 100.0, rtol=1e-9)
    assert dev.rotation_angle_deg(c2w, np.eye(4)) == pytest.approx(20.0)


def test_the_crop_cameras_see_what_the_crop_shows():
    c2w = dev.pose_camera(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -45.0], [0, 0, 0, 1]]))
    w, h, fl = 640, 480, 390.0
    full = {"fl_x": fl, "fl_y": fl, "cx": w / 2, "cy": h / 2}
    box = (-30, 100, 300)  # reaches past the left edge
    crop_cam = dev.crop_intrinsics(fl, w, h, box)
    for point in ([0.0, 0.0, 0.0], [0.05, -0.08, 0.03], [-0.1, 0.02, -0.05]):
        u_full = _project(c2w, full, np.array(point))
        u_crop = _project(c2w, crop_cam, np.array(point))
        np.testing.assert_allclose(u_crop, (u_full - box[:2]) * dev.CROP / box[2], atol=1e-9)
    image = np.zeros((h, w, 3), np.uint8)
    out = dev.crop(image, box, 255)
    assert out.shape == (dev.CROP, dev.CROP, 3)
    assert (out[:, :20] == 255).all()  # outside the frame: white padding
    assert (out[:, 40:] == 0).all()  # inside: the frame


def test_cases_from_a_public_clip_have_the_scorer_layout(tmp_path):
    pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "astronaut.mp4").symlink_to(ROOT / "examples" / "driving" / "astronaut.mp4")
    assert dev.main(["--clips", str(clips), "--names", "astronaut.mp4", "--out", str(tmp_path / "cases")]) == 0
    case = tmp_path / "cases" / "case_astronaut"
    src = json.loads((case / "src" / "transforms.json").read_text())
    tgt = json.loads((case / "targets" / "transforms.json").read_text())
    meta = json.loads((case / "meta.json").read_text())
    assert len(src["frames"]) == dev.N_INPUTS and len(tgt["frames"]) == dev.N_TARGETS
    assert np.load(case / "targets" / "expressions.npy").shape == (dev.N_TARGETS, 52)
    split = meta["split_frame"]
    assert all(m["frame"] < split for m in meta["inputs"]) and all(m["frame"] >= split for m in meta["targets"])
    # each frame's size, as the real cases record it (error_regions.py --by frame finds the frame's edge from it)
    assert all(m["size"] == [src["frames"][0]["w"], src["frames"][0]["h"]] for m in meta["inputs"] + meta["targets"])
    for j in range(dev.N_TARGETS):
        for name in (f"gt/{j:03d}.png", f"gt/mask_{j:03d}.png", f"gt/face_{j:03d}.png",
                     f"baseline/nearest_{j:03d}.png", f"baseline/nearest_face_{j:03d}.png"):
            assert (case / name).is_file(), name
    # the target camera sees the face-frame origin (behind the nose) inside the face hull of its crop
    import imageio.v3 as iio

    for j, frame in enumerate(tgt["frames"]):
        u, v = _project(np.array(frame["transform_matrix"]), frame, np.array([0.0, 0.0, 0.0]))
        face = iio.imread(case / f"gt/face_{j:03d}.png")
        assert face[int(v), int(u)] > 127, (j, u, v)
    assert dev.main(["--clips", str(clips), "--names", "astronaut.mp4", "--out", str(tmp_path / "cases")]) == 2
