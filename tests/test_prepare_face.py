"""`avat3r prepare` on photos and videos without cameras: the shipped phone example end to end with no flags,
video frame selection, and the exit-2 sentences (no face, several faces, too few usable frames, different
people)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")

from avat3r_cli.app import app  # noqa: E402
from stages.capture import read_capture  # noqa: E402
from stages.capture.face_cameras import HEAD_CENTRE_CANONICAL, canonical_mesh  # noqa: E402
from stages.synth.phone import PHONE_VFOV_DEG, PHONE_VIEWS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHONE = ROOT / "examples" / "phone"
REAL = ROOT / ".." / "shared" / "real" / "cases"
runner = CliRunner()


def _photos() -> list[np.ndarray]:
    import imageio.v3 as iio

    return [iio.imread(p) for p in sorted(PHONE.glob("*.jpg"))]


@pytest.fixture(scope="module")
def phone_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phone") / "cap"
    res = runner.invoke(app, ["prepare", str(PHONE), "--out", str(out), "--res", "128"])
    assert res.exit_code == 0, res.output
    return out


def test_phone_photos_prepare_with_no_flags(phone_capture: Path) -> None:
    tf = json.loads((phone_capture / "transforms.json").read_text())
    prep = tf["prepare"]
    assert prep["cameras"] == "face" and prep["focal_source"] == "estimated"
    assert abs(prep["vfov_deg"] - PHONE_VFOV_DEG) < 6.0  # the focal is recovered from the faces alone
    assert prep["residual_overall_px"] < 5.0
    assert tf["normalisation"]["scale"] == 1.0  # metric by default on this path
    assert tf["expression_space"] == "arkit52"
    cap = read_capture(phone_capture)
    assert len(cap) == len(PHONE_VIEWS) and cap.expressions is not None and cap.expressions.shape[1] == 52
    # Camera positions: the true yaw signs and distances (0.33-0.55 m) of the shipped photos come back.
    pos = cap.cameras.centers().numpy()
    yaw = np.degrees(np.arctan2(pos[:, 0], pos[:, 2]))
    true_yaw = np.array([v[0] for v in PHONE_VIEWS])
    assert np.all(np.abs(yaw - true_yaw) < 12.0), yaw
    dist = np.linalg.norm(pos, axis=1)
    assert np.all((dist > 0.25) & (dist < 0.7)), dist
    # Masks from the segmenter: the head is in, the photo's corners (background) are out.
    m = cap.masks.numpy()
    assert m[:, 48:80, 48:80].mean() > 0.95 and m[:, :6, :6].mean() < 0.05
    assert all("source_file" in fr for fr in tf["frames"])


def test_video_frames_are_picked_spread_over_head_turns(tmp_path: Path) -> None:
    from stages.video import mp4_writer

    photos = _photos()
    order = [0, 0, 3, 3, 1, 1, 0, 3, 2, 2]  # a clip lingering on some poses
    video = tmp_path / "clip.mp4"
    writer = mp4_writer(video, fps=5)
    for i in order:
        writer.append_data(photos[i])
    writer.close()
    out = tmp_path / "cap"
    res = runner.invoke(app, ["prepare", str(video), "--out", str(out), "--views", "3", "--res", "64"])
    assert res.exit_code == 0, res.output
    tf = json.loads((out / "transforms.json").read_text())
    idx = [fr["frame_index"] for fr in tf["frames"]]
    picked = {order[i] for i in idx}
    assert len(idx) == 3 and len(picked) == 3  # three different poses, no repeats of one
    assert {1, 2} <= picked  # the two strongest turns (+38 and -42 degrees) are chosen
    assert tf["prepare"]["source_format"] == "face-video"


def test_no_face_and_several_faces_are_bad_input(tmp_path: Path) -> None:
    import imageio.v3 as iio

    src = tmp_path / "photos"
    shutil.copytree(PHONE, src)
    iio.imwrite(src / "IMG_0009.jpg", np.full((200, 150, 3), 128, np.uint8))
    res = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "cap")])
    assert res.exit_code == 2 and "IMG_0009.jpg" in res.output and "no face found" in res.output
    assert not (tmp_path / "cap").exists()
    photos = _photos()
    iio.imwrite(src / "IMG_0009.jpg", np.concatenate([photos[0], photos[3]], axis=1))
    res = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "cap")])
    assert res.exit_code == 2 and "IMG_0009.jpg" in res.output and "2 faces" in res.output


def test_a_video_without_faces_is_too_few_views(tmp_path: Path) -> None:
    from stages.video import mp4_writer

    video = tmp_path / "wall.mp4"
    writer = mp4_writer(video, fps=5)
    for k in range(6):
        writer.append_data(np.full((96, 96, 3), 40 * k, np.uint8))
    writer.close()
    res = runner.invoke(app, ["prepare", str(video), "--out", str(tmp_path / "cap")])
    assert res.exit_code == 2 and "only 0 usable view(s)" in res.output and "need 4" in res.output


def test_photos_of_different_people_are_bad_input(tmp_path: Path) -> None:
    pytest.importorskip("dlib", reason="the identity check needs dlib (avat3r[eval])")
    a, b = REAL / "case_pixel3dmm_loo1" / "src" / "images", REAL / "case_lp_d12" / "src" / "images"
    if not a.is_dir() or not b.is_dir():
        pytest.skip(f"the real dev cases are not at {REAL} (../shared/real is absent)")
    src = tmp_path / "photos"
    src.mkdir()
    for p in sorted(a.glob("*.png")):
        shutil.copy(p, src / f"a_{p.name}")
    shutil.copy(b / "000.png", src / "z_other.png")
    res = runner.invoke(app, ["prepare", str(src), "--out", str(tmp_path / "cap")])
    assert res.exit_code == 2 and "z_other.png" in res.output and "different person" in res.output


def _phone_clip(path: Path, order: list[int], fps: float = 5) -> None:
    from stages.video import mp4_writer

    photos = _photos()
    writer = mp4_writer(path, fps=fps)
    for i in order:
        writer.append_data(photos[i])
    writer.close()


def test_match_cameras_follow_the_actor(tmp_path: Path) -> None:
    from stages.capture.match import match_driving
    from stages.track.frames import open_frames

    order = [0, 1, 2, 3]
    _phone_clip(tmp_path / "clip.mp4", order)
    m = match_driving(open_frames(tmp_path / "clip.mp4"), smooth=0.0)
    assert m.found.all() and m.cameras.width == 384 and m.cameras.height == 512
    assert abs(m.vfov_deg - PHONE_VFOV_DEG) < 8.0
    pos = m.cameras.centers().numpy()
    yaw = np.degrees(np.arctan2(pos[:, 0], pos[:, 2]))
    assert np.all(np.abs(yaw - np.array([PHONE_VIEWS[i][0] for i in order])) < 12.0), yaw
    # Each camera sees the head centre near the projected face centre of its frame (the avatar lands on the actor).
    import imageio.v3 as iio

    from stages.track.landmarker import detect, open_landmarker

    with open_landmarker() as lm:
        for i, img in enumerate(iio.imiter(tmp_path / "clip.mp4")):
            face = detect(lm, img)
            nose = canonical_mesh()[[1, 168]].mean(0) - HEAD_CENTRE_CANONICAL  # between nose tip and bridge
            uv, _ = m.cameras[i].project(torch.tensor(nose[None], dtype=torch.float32))
            mid = face.landmarks[[1, 168], :2].mean(0)
            assert np.linalg.norm(uv[0, 0].numpy() - mid) < 0.03 * 512, (i, uv, mid)


def test_animate_match_overlay_keeps_the_video_around_the_avatar(tmp_path: Path) -> None:
    import imageio.v3 as iio

    _phone_clip(tmp_path / "clip.mp4", [0, 3])
    out = tmp_path / "match.mp4"
    res = runner.invoke(app, ["animate", str(ROOT / "examples" / "avatar.safetensors"), "--driving",
                              str(tmp_path / "clip.mp4"), "--match", "--overlay", "--out", str(out),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    video = np.stack(list(iio.imiter(out)))
    drv = np.stack(list(iio.imiter(tmp_path / "clip.mp4")))
    assert video.shape == drv.shape  # the driving video's own resolution and length
    assert np.abs(video[:, :24, :24].astype(float) - drv[:, :24, :24]).mean() < 6  # background: the video
    bad = runner.invoke(app, ["animate", str(ROOT / "examples" / "avatar.safetensors"), "--exp",
                              str(ROOT / "examples" / "expressions" / "blink.npy"), "--match", "--out", str(out)])
    assert bad.exit_code == 2 and "--match" in bad.output


def test_driving_a_model_of_another_expression_space_is_refused_before_tracking(tmp_path: Path) -> None:
    from stages.capture.match import match_driving_video
    from stages.errors import BadInput

    for owner in ("avatar", "scene"):  # the video need not exist: the check comes first
        with pytest.raises(BadInput, match=f"this {owner}'s expression space has 10 values"):
            match_driving_video(tmp_path / "missing.mp4", 10, owner)


def test_a_folder_of_many_frames_is_a_pool(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(18):  # more than a capture takes: frames, not photos; bad ones would be skipped
        shutil.copy(sorted(PHONE.glob("*.jpg"))[k % 4], frames / f"frame_{k:03d}.jpg")
    out = tmp_path / "cap"
    res = runner.invoke(app, ["prepare", str(frames), "--out", str(out), "--views", "2", "--res", "32"])
    assert res.exit_code == 0, res.output
    tf = json.loads((out / "transforms.json").read_text())
    assert tf["prepare"]["source_format"] == "face-frames" and len(tf["frames"]) == 2
    # The most frontal frame, then the one turned farthest from it (-42 degrees of yaw: photo 3).
    assert sorted(int(Path(f["source_file"]).stem[-3:]) % 4 for f in tf["frames"]) == [0, 2]


def test_parallel_video_frames_are_centred_on_the_head(tmp_path: Path) -> None:
    case = REAL / "case_lp_d0" / "src"
    if not case.is_dir():
        pytest.skip(f"the real dev cases are not at {REAL} (../shared/real is absent)")
    out = tmp_path / "cap"
    res = runner.invoke(app, ["prepare", str(case), "--out", str(out), "--scale", "metric", "--res", "64"])
    assert res.exit_code == 0, res.output
    norm = json.loads((out / "transforms.json").read_text())["normalisation"]
    assert norm["centre_from"] == "face"
    # The source world is MediaPipe's canonical face frame: the head centre is a few cm behind the face,
    # not 0.7 m behind it as the optical-axes rule put it.
    assert np.linalg.norm(np.array(norm["centre"]) - HEAD_CENTRE_CANONICAL) < 0.03


def test_auto_scale_keeps_the_head_framing(phone_capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "cap"
    res = runner.invoke(app, ["prepare", str(PHONE), "--out", str(out), "--res", "128", "--scale", "auto"])
    assert res.exit_code == 0, res.output
    auto, metric = read_capture(out), read_capture(phone_capture)
    assert abs(float(auto.cameras.centers().norm(dim=-1).mean()) - 1.0) < 1e-4
    # --head-radius is in metres on this path, so both crops frame the same head the same way.
    assert np.allclose(auto.cameras.fx.numpy(), metric.cameras.fx.numpy(), rtol=1e-3)
    assert np.abs(auto.masks.numpy() - metric.masks.numpy()).mean() < 0.01


def test_render_driving_writes_one_png_per_frame_at_the_video_size(tmp_path: Path) -> None:
    import imageio.v3 as iio

    _phone_clip(tmp_path / "clip.mp4", [0, 3])
    out = tmp_path / "frames"
    res = runner.invoke(app, ["render", str(ROOT / "examples" / "avatar.safetensors"), "--driving",
                              str(tmp_path / "clip.mp4"), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["00000.png", "00001.png"]
    assert iio.imread(out / "00000.png").shape == (512, 384, 4)
    both = runner.invoke(app, ["render", str(ROOT / "examples" / "avatar.safetensors"), "--driving",
                               str(tmp_path / "clip.mp4"), "--cameras", str(tmp_path / "x.json"), "--out", str(out)])
    assert both.exit_code == 2 and "exactly one of --cameras" in both.output
