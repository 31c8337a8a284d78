"""Face tracking (`avat3r track`, `animate --driving`): MediaPipe's landmarker on real face pixels (scikit-image's
astronaut), on the synthetic heads, the One-Euro filter, gap filling, head poses and the CLI's bad inputs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.cameras import focal_for_extent, front, read_transforms
from stages.errors import BadInput
from stages.expressions import ARKIT_INDEX, mirror_arkit
from stages.track import (
    detect,
    fill_missing,
    one_euro,
    open_frames,
    open_landmarker,
    pose_c2w,
    track,
)
from stages.track.clip import astronaut_face, driving_frames, write_clip
from stages.track.drive import beside, track_driving
from stages.track.landmarker import landmarker_model_path


def _landmarker_missing() -> str | None:
    """Why MediaPipe's landmarker cannot run here (None when it can). Only the tests that run it skip; the pure
    ones (filters, poses, the CLI's refusals) run everywhere."""
    try:
        import mediapipe  # noqa: F401
        from mediapipe.tasks.python import vision  # noqa: F401

        landmarker_model_path()
    except (ImportError, BadInput) as exc:
        return f"MediaPipe's face landmarker is not installed ({exc}); make setup installs avat3r[track]"
    return None


needs_landmarker = pytest.mark.skipif(_landmarker_missing() is not None, reason=str(_landmarker_missing()))

runner = CliRunner()
I = ARKIT_INDEX  # noqa: E741


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return astronaut_face(192)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 12-frame driving clip (jaw, blink, roll, mirror) as an mp4, and its script."""
    frames, script = driving_frames(12, 160)
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_clip(path, frames)
    return path, script


@needs_landmarker
def test_astronaut_is_tracked_with_arkit_channels(face):
    with open_landmarker() as lm:
        r = detect(lm, face)
    assert r is not None
    assert r.landmarks.shape == (478, 3) and r.blendshapes.shape == (52,) and r.transform.shape == (4, 4)
    # landmarks in pixels, inside the image; she smiles broadly with a closed jaw
    assert (r.landmarks[:, :2] > 0).all() and (r.landmarks[:, :2] < 192).all()
    assert r.blendshapes[I["mouthSmileLeft"]] > 0.5 and r.blendshapes[I["mouthSmileRight"]] > 0.5
    assert r.blendshapes[I["jawOpen"]] < 0.2 and r.blendshapes[I["tongueOut"]] == 0.0
    rot = r.transform[:3, :3] / np.cbrt(np.linalg.det(r.transform[:3, :3]))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-3)


@needs_landmarker
def test_no_face_gives_none(face):
    with open_landmarker() as lm:
        assert detect(lm, np.full_like(face, 128)) is None


@needs_landmarker
def test_still_video_gives_near_constant_codes(face, tmp_path):
    video = tmp_path / "still.mp4"
    write_clip(video, np.stack([face] * 10))
    raw = track(open_frames(video), smooth=0.0)
    assert raw.codes.shape == (10, 52) and raw.found.all()
    assert raw.codes.std(axis=0).max() < 0.05  # measured 0.03: the landmarker's jitter on a re-encoded still
    smoothed = track(open_frames(video), smooth=1.0)
    assert smoothed.codes.std(axis=0).max() < raw.codes.std(axis=0).max()


@needs_landmarker
def test_clip_motions_come_back(clip):
    path, script = clip
    result = track(open_frames(path), smooth=0.0)
    jaw = result.codes[:, I["jawOpen"]]
    assert np.corrcoef(jaw, script[:, 0])[0, 1] > 0.8
    # The image rolls by script[:, 2] degrees counter-clockwise (then is mirrored in the second half, which
    # flips the roll, the photo's own roll included): the head rolls that way about the camera's +z axis, so
    # the camera, looking at a fixed avatar, must roll the opposite way.
    head = np.degrees(np.arctan2(result.transforms[:, 1, 0], result.transforms[:, 0, 0]))
    sign = np.where(script[:, 3] > 0, -1.0, 1.0)
    expected_head = sign * (head[0] + script[:, 2])
    assert np.abs(head - expected_head).max() < 2.5
    c2w = pose_c2w(result.transforms)
    cam_roll = np.degrees(np.arctan2(c2w[:, 1, 0], c2w[:, 0, 0]))
    np.testing.assert_allclose(cam_roll, -head, atol=0.5)  # equal but for the small pitch and yaw


@needs_landmarker
def test_synthetic_heads_expressions_are_recognised():
    """The landmarker finds the synthetic heads (stages.synth) and reads their expressions back; a mirrored head
    swaps Left and Right."""
    from stages.expressions import arkit_code
    from stages.synth.identity import sample_identity
    from stages.synth.render import render_head
    from stages.synth.studio import HEAD_EXTENT

    size = 160
    cam = front(1, radius=1.0, focal=focal_for_extent(HEAD_EXTENT, 1.0, size), size=size)
    idn = sample_identity(np.random.default_rng(0))
    exprs = {"neutral": arkit_code(), "jaw": arkit_code(jawOpen=1.0), "blink": arkit_code(eyeBlinkLeft=1.0),
             "smile": arkit_code(mouthSmileLeft=1.0, mouthSmileRight=1.0)}
    got = {}
    with open_landmarker() as lm:
        for name, e in exprs.items():
            out = render_head(idn, e, cam, depth=False)
            rgb, a = out["rgb"][0].numpy(), out["alpha"][0].numpy()[..., None]
            img = ((rgb * a + 1 - a) * 255 + 0.5).astype(np.uint8)
            for key, im in ((name, img), (f"{name}-mirrored", np.ascontiguousarray(img[:, ::-1]))):
                r = detect(lm, im)
                assert r is not None, f"no face found in the synthetic head ({key})"
                got[key] = r.blendshapes
    n = got["neutral"]
    assert got["jaw"][I["jawOpen"]] > n[I["jawOpen"]] + 0.3
    # a left wink (the subject's left, +x) reads as eyeBlinkLeft, not Right: MediaPipe uses ARKit's sides
    assert got["blink"][I["eyeBlinkLeft"]] > 0.4
    assert got["blink"][I["eyeBlinkLeft"]] > got["blink"][I["eyeBlinkRight"]] + 0.2
    for ch in ("mouthSmileLeft", "mouthSmileRight"):
        assert got["smile"][I[ch]] > n[I[ch]] + 0.4
    # the mirrored wink is a right wink: Left/Right channels swap (mirror_arkit), within the landmarker's noise
    m = got["blink-mirrored"]
    assert m[I["eyeBlinkRight"]] > m[I["eyeBlinkLeft"]] + 0.2
    lr = [i for name, i in I.items() if "Left" in name or "Right" in name]
    for key in ("blink", "smile", "jaw"):
        swapped = np.abs(mirror_arkit(got[key]) - got[f"{key}-mirrored"])[lr]
        assert swapped.max() < 0.25 and swapped.mean() < 0.06, key


def test_one_euro_smooths_jitter_and_follows_steps():
    rng = np.random.default_rng(0)
    still = 0.5 + 0.02 * rng.normal(size=(200, 3))
    out = one_euro(still, 25.0, min_cutoff=1.0, beta=0.5)
    assert out[50:].std() < 0.5 * still[50:].std()
    step = np.r_[np.zeros(25), np.ones(50)][:, None]
    out = one_euro(step, 25.0, min_cutoff=1.0, beta=1.0)
    assert out[:25].max() == 0.0 and abs(out[-1, 0] - 1.0) < 0.01 and (np.diff(out[:, 0]) >= 0).all()


def test_fill_missing_interpolates_and_extends():
    values = np.array([[0.0], [9.0], [2.0], [9.0], [4.0], [9.0]])
    found = np.array([False, False, True, False, True, False])
    np.testing.assert_allclose(fill_missing(values, found)[:, 0], [2, 2, 2, 3, 4, 4])


def test_pose_convention():
    """A frontal face gives a camera in front of the avatar (+z); a head turned toward the subject's left
    (+x, positive rotation about +y) gives a camera swung the other way, toward -x."""
    np.testing.assert_allclose(pose_c2w(np.eye(4)[None], 2.0)[0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2],
                                                                   [0, 0, 0, 1]], atol=1e-12)
    a = np.radians(20)
    turn = np.eye(4)
    turn[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    c2w = pose_c2w(turn[None], 1.0)[0]
    assert c2w[0, 3] < -0.3 and abs(np.linalg.norm(c2w[:3, 3]) - 1) < 1e-9
    # the camera still looks at the head centre: its -z axis points from its centre to the origin
    np.testing.assert_allclose(-c2w[:3, 2], -c2w[:3, 3], atol=1e-9)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@needs_landmarker
def test_cli_track_writes_codes_and_poses(clip, tmp_path):
    path, _ = clip
    codes, poses = tmp_path / "codes.npy", tmp_path / "poses.json"
    out = _ok(runner.invoke(app, ["track", str(path), "--out", str(codes), "--poses", str(poses), "--quiet"]))
    assert "12 frames" in out.output
    arr = np.load(codes)
    assert arr.shape == (12, 52) and arr.dtype == np.float32 and 0 <= arr.min() and arr.max() <= 1
    cams = read_transforms(poses).cameras()
    assert len(cams) == 12 and torch.allclose(cams.centers().norm(dim=-1), torch.ones(12), atol=1e-5)


@needs_landmarker
def test_cli_track_fills_frames_without_a_face(face, tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate([face, face, np.full_like(face, 90), face]):
        iio.imwrite(folder / f"f{i}.png", img)
    out = _ok(runner.invoke(app, ["track", str(folder), "--out", str(tmp_path / "c.npy"), "--smooth", "0", "-q"]))
    assert "no face in 1 frame" in out.output
    arr = np.load(tmp_path / "c.npy")
    np.testing.assert_allclose(arr[2], (arr[1] + arr[3]) / 2, atol=1e-6)


@needs_landmarker
def test_cli_track_bad_input(face, tmp_path):
    blank = tmp_path / "blank.mp4"
    write_clip(blank, np.full((5, 64, 64, 3), 128, np.uint8))
    res = runner.invoke(app, ["track", str(blank), "--out", str(tmp_path / "c.npy")])
    assert res.exit_code == 2 and "blank.mp4" in res.output and "no face" in res.output
    assert not (tmp_path / "c.npy").exists()
    res = runner.invoke(app, ["track", str(blank), "--out", str(tmp_path / "c.npy"), "--landmarker",
                              str(tmp_path / "missing.task")])
    assert res.exit_code == 2 and "missing.task" in res.output
    res = runner.invoke(app, ["track", str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "c.npy")])
    assert res.exit_code == 2 and "nothing.mp4" in res.output
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert runner.invoke(app, ["track", str(bad), "--out", str(tmp_path / "c.npy")]).exit_code == 2


def test_cli_animate_needs_exactly_one_driver(tmp_path):
    for extra in ([], ["--exp", "a.npy", "--driving", "b.mp4"]):
        res = runner.invoke(app, ["animate", str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "v.mp4"),
                                  *extra])
        assert res.exit_code == 2 and "exactly one of --exp" in res.output


@needs_landmarker
def test_track_driving_follows_the_head_and_frames_like_front(clip):
    """The driving path without a network: codes per frame, cameras at the avatar's framing distance."""
    path, _ = clip
    cams = front(4, radius=1.3, focal=400.0, size=64)
    driver = SimpleNamespace(expression_dim=52, avatar=SimpleNamespace(cameras=cams))
    source, codes, follow = track_driving(path, driver, None, 64, None, 1.0)
    assert codes.shape == (12, 52) and len(follow) == 12
    assert torch.allclose(follow.centers().norm(dim=-1), torch.full((12,), 1.3), atol=1e-4)
    renders = ((np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)) for _ in range(12))
    rgb, alpha = next(beside(source, renders))
    assert rgb.dtype == np.uint8 and alpha.dtype == np.uint8
    assert rgb.shape == (64, 128, 3) and alpha[:, :64].min() == 255 and rgb[:, :64].std() > 12
    with pytest.raises(Exception, match="ARKit-52"):
        track_driving(path, SimpleNamespace(expression_dim=10, avatar=None), None, 64, None, 1.0)


def test_missing_mediapipe_is_a_clear_exit_2(tmp_path, monkeypatch):
    import sys

    video = tmp_path / "grey.mp4"  # any readable video: the refusal comes before a face is looked for
    write_clip(video, np.full((3, 64, 64, 3), 128, np.uint8))
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # as if it were not installed
    res = runner.invoke(app, ["track", str(video), "--out", str(tmp_path / "c.npy")])
    assert res.exit_code == 2 and "install avat3r[track]" in res.output
