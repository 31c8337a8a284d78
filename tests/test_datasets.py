"""Dataset loaders on tiny fixtures written here in each published layout (Ava256 zips of AVIF frames, NeRSemble
v2 videos and v1 frame folders).

The fixtures are drawn with the datasets' own raw conventions only (OpenCV world-to-camera, K and T stored
transposed for Ava256, millimetres, integer pixel centres, calibration at a larger size, lens distortion, head
pose), never with `stages.cameras`: a coloured dot is drawn where a known 3D point projects, and every loader
must return cameras that project that point onto the dot in the crops it returns."""

from __future__ import annotations

import csv
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.cameras import Cameras
from stages.datasets import open_dataset, parse_spec
from stages.errors import BadInput

SIZE = 64
BG = 0.15
# Two points on the face, in head coordinates (metres; +x the subject's left, +y up, +z out of the face).
DOTS = {"red": np.array([0.030, 0.040, 0.085]), "green": np.array([-0.035, -0.025, 0.080])}
CHANNEL = {"red": 0, "green": 1}
DIST = np.array([-1.5, 0.5, 0.003, -0.002])  # k1 k2 p1 p2: strong, so ignoring it would show


# ----- raw-convention geometry (independent of stages.cameras) -------------------------------------------------
def rot(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def look_at_w2c(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera 4x4 (x right, y down, z forward)."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(-up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z])
    M[:3, 3] = -M[:3, :3] @ eye
    return M


def project_raw(w2c: np.ndarray, K: np.ndarray, p: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """OpenCV projection with integer pixel centres (and OpenCV's k1 k2 p1 p2 lens model)."""
    q = w2c[:3, :3] @ p + w2c[:3, 3]
    x, y = q[0] / q[2], q[1] / q[2]
    if dist is not None:
        k1, k2, p1, p2 = dist
        r2 = x * x + y * y
        rad = 1 + k1 * r2 + k2 * r2 * r2
        x, y = x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.array([K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2]])


def to_image_px(uv_native: np.ndarray, factor: float) -> np.ndarray:
    """Integer-centre pixel coordinates of a calibration made at `factor` times the image size, for an image
    made by an area resize (corners line up: NeRSemble)."""
    return (uv_native + 0.5) / factor - 0.5


def to_ava_px(uv_native: np.ndarray, factor: float) -> np.ndarray:
    """The same for Ava256, whose own loader scales integer-centre intrinsics by 1 / factor (`K[:2] / downsample`),
    so its images put pixel i where the calibration's pixel i * factor is."""
    return uv_native / factor


def draw(h: int, w: int, dots: dict[str, np.ndarray], head_uv: np.ndarray, head_r: float, sigma: float = 1.3
         ) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with Gaussian dots (integer-centre coordinates) and a disc mask around the head."""
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    img = np.full((h, w, 3), BG)
    for name, uv in dots.items():
        img[..., CHANNEL[name]] += 0.8 * np.exp(-((jj - uv[0]) ** 2 + (ii - uv[1]) ** 2) / (2 * sigma**2))
    mask = ((jj - head_uv[0]) ** 2 + (ii - head_uv[1]) ** 2 <= head_r**2)
    return np.clip(img, 0, 1), mask


def u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def rig_eyes(centre: np.ndarray, front: np.ndarray, up: np.ndarray, dist: float, n: int = 12) -> list[np.ndarray]:
    """n camera centres on a dome in front of the head: azimuths -70..70 degrees, two elevations."""
    side = np.cross(up, front)
    eyes = []
    for k in range(n):
        az, el = np.radians(-70 + 140 * (k // 2) / max(1, n // 2 - 1)), np.radians(-10 if k % 2 else 20)
        d = np.cos(el) * (np.cos(az) * front + np.sin(az) * side) + np.sin(el) * up
        eyes.append(centre + dist * d)
    return eyes


# ----- Ava256 fixture ------------------------------------------------------------------------------------------
AVA_FRAMES = [3, 7, 11]
AVA_CAPTURE = "20210223--1023--AVW368"


def ava_head_pose(frame: int) -> np.ndarray:
    """Head -> studio world, millimetres. The studio is OpenCV-like (y down), so head +y maps to world -y."""
    k = AVA_FRAMES.index(frame)
    H = np.eye(4)
    H[:3, :3] = rot("y", 25) @ rot("x", 180) @ rot("y", 4.0 * k) @ rot("x", 2.0 * k)
    H[:3, 3] = [120 + 8 * k, -1500, 2000 + 5 * k]
    return H


def write_ava256(root: Path, with_codes: bool = True, native: tuple[int, int] = (256, 384), factor: int = 2,
                 focal: float = 400.0, dist: np.ndarray = DIST, sigma: float = 1.3, frames: list[int] | None = None
                 ) -> dict:
    """One capture in the ava-256 layout (calibration `factor` times the image size); returns the raw
    calibration for the checks."""
    dec = root / AVA_CAPTURE / "decoder"
    (dec / "image").mkdir(parents=True)
    (dec / "segmentation_parts").mkdir()
    (dec / "head_pose").mkdir()
    native_w, native_h = native
    w, h = native_w // factor, native_h // factor
    frames = frames or AVA_FRAMES
    H0 = ava_head_pose(AVA_FRAMES[0])
    centre, front, up = H0[:3, 3], H0[:3, :3] @ [0, 0, 1.0], np.array([0, -1.0, 0])
    cams = {}
    for k, eye in enumerate(rig_eyes(centre, front, up, 1000.0)):
        K = np.array([[focal, 0, native_w / 2 - 0.5 + 18 * (k % 3 - 1)],
                      [0, focal * 1.01, native_h / 2 + 20 * (k % 2)], [0, 0, 1]])
        # tilted 12 degrees up or down off the head, which then sits where the lens distortion is strong
        w2c = look_at_w2c(eye, centre, up)
        w2c[:3, :3] = rot("x", 12 if k % 2 else -12) @ w2c[:3, :3]
        w2c[:3, 3] = -w2c[:3, :3] @ eye
        cams[str(400000 + k)] = {"K": K, "w2c": w2c, "dist": dist * (1 + 0.1 * (k % 2))}
    json.dump({"KRT": [{"cameraId": int(c), "K": v["K"].T.tolist(), "T": v["w2c"].T.tolist(),
                        "distortion": v["dist"].tolist()} for c, v in cams.items()]},
              (dec / "camera_calibration.json").open("w"))
    with (dec / "frame_list.csv").open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["seg_id", "frame_id"])
        for fr in frames:
            wr.writerow(["EXP_jaw", str(fr)])
    with zipfile.ZipFile(dec / "head_pose" / "head_pose.zip", "w") as z:
        for fr in frames:
            z.writestr(f"{fr:06d}.txt", "\n".join(" ".join(f"{v:.9f}" for v in row) for row in ava_head_pose(fr)[:3]))
    from PIL import Image

    for cid, cam in cams.items():
        with zipfile.ZipFile(dec / "image" / f"cam{cid}.zip", "w") as zi, \
                zipfile.ZipFile(dec / "segmentation_parts" / f"cam{cid}.zip", "w") as zs:
            for fr in frames:
                H = ava_head_pose(fr)
                dots = {n: to_ava_px(project_raw(cam["w2c"] @ H, cam["K"], p * 1000, cam["dist"]), factor)
                        for n, p in DOTS.items()}
                head = to_ava_px(project_raw(cam["w2c"] @ H, cam["K"], np.zeros(3), cam["dist"]), factor)
                img, mask = draw(h, w, dots, head, 0.11 * focal / factor, sigma)
                buf = io.BytesIO()
                Image.fromarray(u8(img)).save(buf, format="AVIF", quality=100, subsampling="4:4:4")
                zi.writestr(f"cam{cid}/{fr:06d}.avif", buf.getvalue())
                buf = io.BytesIO()
                Image.fromarray((mask * 3).astype(np.uint8)).save(buf, format="PNG")
                zs.writestr(f"cam{cid}/{fr:06d}.png", buf.getvalue())
    if with_codes:
        (root / "codes").mkdir()
        codes = np.random.default_rng(0).normal(size=(len(frames), 8)).astype(np.float32)
        np.savez(root / "codes" / f"{AVA_CAPTURE}.npz", codes=codes, frames=np.array(frames))
    return {"cams": cams, "factor": factor}


# ----- NeRSemble fixtures --------------------------------------------------------------------------------------
NS_CENTRE = np.array([0.05, -0.10, 0.90])  # the head centre in NeRSemble's world (metres, y down)
NS_FRONT = np.array([0.0, 0.0, -1.0])  # the subject faces the rig, which stands at smaller z
NS_SERIALS = [str(220700190 + k) for k in range(12)]
NS_TRACKED = [0, 2, 3]


def ns_pose(frame: int) -> np.ndarray:
    """Head -> NeRSemble world at a frame, as FLAME tracking gives it: at frame 0 a rotation by 180 degrees
    about x (+y up -> world -y, the world being y-down; +z, the face, -> NS_FRONT = world -z; so +x, the
    subject's left, -> world +x), then the head turns and shifts a little from frame to frame."""
    P = np.eye(4)
    P[:3, :3] = rot("x", 180) @ rot("y", 4.0 * frame) @ rot("x", 2.0 * frame)
    P[:3, 3] = NS_CENTRE + np.array([0.004, -0.002, 0.003]) * frame
    return P


def ns_head_to_world(p: np.ndarray, frame: int = 0) -> np.ndarray:
    P = ns_pose(frame)
    return P[:3, :3] @ p + P[:3, 3]


def ns_moving(frame: int) -> np.ndarray:
    """A third (blue) dot that moves with the frame, to catch frames read out of order."""
    return np.array([-0.03 + 0.02 * frame, -0.095, 0.05])


def ns_rig(factor: int) -> tuple[dict, int, int]:
    w, h = 96, 128
    eyes = rig_eyes(NS_CENTRE, NS_FRONT, np.array([0, -1.0, 0]), 1.0)
    K = np.array([[200.0 * factor, 0, (w * factor) / 2 - 0.5], [0, 200.0 * factor, (h * factor) / 2 - 0.5], [0, 0, 1]])
    cams = {s: {"K": K, "w2c": look_at_w2c(e, NS_CENTRE, np.array([0, -1.0, 0]))} for s, e in zip(NS_SERIALS, eyes,
                                                                                                 strict=True)}
    return cams, w, h


def ns_frame(cam: dict, factor: int, w: int, h: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
    dots = {n: to_image_px(project_raw(cam["w2c"], cam["K"], ns_head_to_world(p, frame)), factor)
            for n, p in DOTS.items()}
    head = to_image_px(project_raw(cam["w2c"], cam["K"], ns_head_to_world(np.zeros(3), frame)), factor)
    img, mask = draw(h, w, dots, head, 0.11 * 200)
    uv = to_image_px(project_raw(cam["w2c"], cam["K"], ns_head_to_world(ns_moving(frame), frame)), factor)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    img[..., 2] += 0.8 * np.exp(-((jj - uv[0]) ** 2 + (ii - uv[1]) ** 2) / (2 * 1.3**2))
    return np.clip(img, 0, 1), mask


def write_nersemble_v2(root: Path, n_frames: int = 4) -> dict:
    import imageio.v2 as iio2

    pdir = root / "017"
    (pdir / "calibration").mkdir(parents=True)
    cams, w, h = ns_rig(1)
    calib = {"world_2_cam": {s: c["w2c"].tolist() for s, c in cams.items()},
             "intrinsics": cams[NS_SERIALS[0]]["K"].tolist()}
    json.dump(calib, (pdir / "calibration" / "camera_params.json").open("w"))
    seq = pdir / "sequences" / "EXP-2-eyes"
    (seq / "images").mkdir(parents=True)
    (seq / "alpha_maps").mkdir()
    (pdir / "sequences" / "BACKGROUND").mkdir()
    for s, cam in cams.items():
        frames = [ns_frame(cam, 1, w, h, f) for f in range(n_frames)]
        for sub, pick in (("images", lambda x: u8(x[0])),
                          ("alpha_maps", lambda x: u8(np.repeat(x[1][..., None], 3, 2)))):
            wr = iio2.get_writer(seq / sub / f"cam_{s}.mp4", fps=24, codec="libx264", macro_block_size=1,
                                 pixelformat="yuv444p", output_params=["-crf", "0"])
            for x in frames:
                wr.append_data(pick(x))
            wr.close()
    (seq / "tracking").mkdir()
    rng = np.random.default_rng(1)
    T = len(NS_TRACKED)
    np.savez(seq / "tracking" / "flame2023_tracking_v2.npz", shape=rng.normal(size=(1, 300)),
             expression=rng.normal(size=(T, 100)), jaw=rng.normal(size=(T, 3)) * 0.1, rotation=np.zeros((T, 3)),
             rotation_matrices=np.stack([ns_pose(f)[:3, :3] for f in NS_TRACKED]),
             translation=np.stack([ns_pose(f)[:3, 3] for f in NS_TRACKED]), neck=np.zeros((T, 3)),
             eyes=np.zeros((T, 6)), scale=np.ones((1, 1)), frames=np.array(NS_TRACKED))
    return {"cams": cams, "factor": 1}


def write_nersemble_v1(root: Path, n_frames: int = 2) -> dict:
    from stages.io import write_image

    pdir = root / "030"
    pdir.mkdir(parents=True)
    cams, w, h = ns_rig(2)
    json.dump({"world_2_cam": {s: c["w2c"].tolist() for s, c in cams.items()},
               "intrinsics": cams[NS_SERIALS[0]]["K"].tolist()}, (pdir / "camera_params.json").open("w"))
    for f in range(n_frames):
        fdir = pdir / "sequences" / "EMO-1-shout+laugh" / f"frame_{f:05d}"
        for s, cam in cams.items():
            img, mask = ns_frame(cam, 2, w, h, f)
            write_image(fdir / "images-2x" / f"cam_{s}.png", u8(img))
            write_image(fdir / "alpha_map" / f"cam_{s}.png", u8(mask.astype(np.float32)))
    return {"cams": cams, "factor": 2}


# ----- checks --------------------------------------------------------------------------------------------------
def dot_centre(rgb: np.ndarray, channel: int) -> np.ndarray | None:
    """Intensity-weighted centre (pixel-corner coordinates) of a dot drawn in one colour channel."""
    others = [c for c in range(3) if c != channel]
    wgt = np.clip(rgb[..., channel] - rgb[..., others].max(-1) - 0.05, 0, None)
    if wgt.sum() < 0.5:
        return None
    ii, jj = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    return np.array([(wgt * (jj + 0.5)).sum(), (wgt * (ii + 0.5)).sum()]) / wgt.sum()


def reprojection_errors(ds, subject: str, t: int, points: dict[str, np.ndarray]) -> list[float]:
    """Pixel distance between where the loader's cameras put each point and the dot in its crop, per camera."""
    cams = ds.cameras(subject, t)
    errs = []
    for v in range(len(cams)):
        rgb, _ = ds.load(subject, t, v)
        for name, p in points.items():
            found = dot_centre(rgb, CHANNEL[name])
            uv, z = cams[v].project(torch.as_tensor(p, dtype=torch.float32)[None])
            assert found is not None and float(z) > 0
            errs.append(float(np.linalg.norm(found - uv[0, 0].numpy())))
    return errs


@pytest.fixture(scope="module")
def ava(tmp_path_factory):
    root = tmp_path_factory.mktemp("ava")
    raw = write_ava256(root)
    return root, raw


@pytest.fixture(scope="module")
def ners_v2(tmp_path_factory):
    root = tmp_path_factory.mktemp("ners2")
    return root, write_nersemble_v2(root)


def test_spec_strings():
    assert parse_spec("/data/ds").kind == "synth"
    s = parse_spec("ava256:/data/ava?codes=/c&space=vae")
    assert (s.kind, str(s.path), s.options) == ("ava256", "/data/ava", {"codes": "/c", "space": "vae"})
    assert parse_spec("nersemble:rel/dir").path == Path("rel/dir")
    with pytest.raises(BadInput, match="unknown dataset kind"):
        parse_spec("colmap:/x")
    with pytest.raises(BadInput, match="key=value"):
        parse_spec("ava256:/x?codes")


def test_ava256_layout_codes_and_reprojection(ava):
    root, raw = ava
    ds = open_dataset(f"ava256:{root}", SIZE)
    assert ds.all_subjects() == [AVA_CAPTURE] and ds.subjects("all") == [AVA_CAPTURE]
    assert ds.expression_space == ("ava256", 8)
    assert ds.timesteps(AVA_CAPTURE) == AVA_FRAMES
    assert ds.camera_names(AVA_CAPTURE) == sorted(raw["cams"])
    want = np.load(root / "codes" / f"{AVA_CAPTURE}.npz")["codes"][1]
    np.testing.assert_allclose(ds.codes(AVA_CAPTURE, 7), want)
    norm = ds.normalisation(AVA_CAPTURE)
    # the world: head centre near the origin (the cameras look at it, give or take their tilt), +z out of the
    # face, +y up, +x the subject's left
    assert np.linalg.norm(norm.apply_points(np.zeros(3))) < 0.03
    assert np.allclose(norm.rotation, np.eye(3), atol=0.02) and abs(norm.scale - 1) < 1e-9
    for t in (3, 11):  # frames with different head poses: the cameras move, the head stays
        points = {n: norm.apply_points(p) for n, p in DOTS.items()}
        errs = reprojection_errors(ds, AVA_CAPTURE, t, points)
        assert max(errs) < 0.3, errs
    rgb, mask = ds.load(AVA_CAPTURE, 7, 0)
    assert rgb.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE) and rgb.dtype == np.float32
    assert ds.has_masks(AVA_CAPTURE) and 0.05 < mask.mean() < 0.8
    assert mask[SIZE // 2, SIZE // 2] == 1 and mask[0, 0] == 0  # the head is in the middle of the crop


def test_ava256_distortion_is_removed(ava):
    """The same fixture read as if it had no lens distortion misplaces the dots by more than a pixel."""
    root, raw = ava
    ds = open_dataset(f"ava256:{root}", SIZE)
    ds._subject(AVA_CAPTURE)
    for cam in ds._subjects[AVA_CAPTURE]["calib"].values():
        cam["dist"] = np.zeros(4)
    points = {n: ds.normalisation(AVA_CAPTURE).apply_points(p) for n, p in DOTS.items()}
    assert max(reprojection_errors(ds, AVA_CAPTURE, 3, points)) > 2.0


def test_ava256_markers_land_within_a_seventh_of_a_pixel(tmp_path):
    """At Ava256's own scale (calibration 4x the image, as 2668x4096 vs 667x1024), mild distortion and crops
    larger than the output: the markers in the crops sit where the loader's cameras project them, to 0.15 px.
    Scaling the calibration about the pixel corner instead of Ava256's way put them 0.3-0.4 px off."""
    write_ava256(tmp_path, with_codes=False, native=(1024, 1536), factor=4, focal=1400.0, dist=DIST * 0.05,
                 sigma=1.2, frames=[3])
    ds = open_dataset(f"ava256:{tmp_path}", 96)
    assert min(c.size for c in ds._rig(AVA_CAPTURE, 3)[1]) > 96, "the crops should be shrunk, as in practice"
    points = {n: ds.normalisation(AVA_CAPTURE).apply_points(p) for n, p in DOTS.items()}
    errs = reprojection_errors(ds, AVA_CAPTURE, 3, points)
    assert max(errs) <= 0.15, f"markers off by {np.mean(errs):.3f} px on average, {max(errs):.3f} px at most"


def test_ava256_without_codes_and_bad_input(tmp_path, ava):
    root, _ = ava
    ds = open_dataset(f"ava256:{root / AVA_CAPTURE}", SIZE)  # a capture folder itself
    assert ds.expression_space == ("none", 0) and ds.codes(AVA_CAPTURE, 3) is None
    with pytest.raises(BadInput, match="no frame 5"):
        open_dataset(f"ava256:{root}", SIZE).cameras(AVA_CAPTURE, 5)
    with pytest.raises(BadInput, match="camera_calibration"):
        open_dataset(f"ava256:{tmp_path}", SIZE)
    bad = tmp_path / "codes"
    bad.mkdir()
    np.save(bad / f"{AVA_CAPTURE}.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(BadInput, match="one per frame_list.csv row"):
        _ = open_dataset(f"ava256:{root}?codes={bad}", SIZE).expression_space
    with pytest.raises(BadInput, match="unknown ava256 loader option 'code'"):
        open_dataset(f"ava256:{root}?code={bad}", SIZE)


def test_nersemble_v2_videos_tracking_and_reprojection(ners_v2):
    root, raw = ners_v2
    ds = open_dataset(f"nersemble:{root}", SIZE)
    assert ds.all_subjects() == ["017"] and ds.camera_names("017") == NS_SERIALS
    assert ds.expression_space == ("flame", 103)
    assert [ds.locate("017", t) for t in ds.timesteps("017")] == [("EXP-2-eyes", f) for f in NS_TRACKED]
    t2 = ds.timestep_of("017", "EXP-2-eyes", 2)
    code = ds.codes("017", t2)
    z = np.load(root / "017" / "sequences" / "EXP-2-eyes" / "tracking" / "flame2023_tracking_v2.npz")
    np.testing.assert_allclose(code, np.concatenate([z["expression"][1], z["jaw"][1]]), rtol=1e-6)
    with pytest.raises(BadInput, match="no frame 1"):
        ds.timestep_of("017", "EXP-2-eyes", 1)  # not tracked
    norm = ds.normalisation("017")
    assert np.linalg.norm(norm.apply_points(NS_CENTRE)) < 1e-3
    # the subject's left (+x head) must come out as +x, up as +y, the face as +z
    for axis in range(3):
        e = np.zeros(3)
        e[axis] = 0.1
        assert np.allclose(norm.apply_points(ns_head_to_world(e)) - norm.apply_points(NS_CENTRE), e, atol=2e-3)
    for frame in (3, 0):  # out of order: the reader must seek back
        t = ds.timestep_of("017", "EXP-2-eyes", frame)  # the head moved: its points' world positions at t
        points = {n: norm.apply_points(ns_head_to_world(p, frame)) for n, p in DOTS.items()}
        assert max(reprojection_errors(ds, "017", t, points)) < 0.3
        rgb, mask = ds.load("017", t, 5)
        found = dot_centre(rgb, 2)
        uv, _ = ds.cameras("017", t)[5].project(torch.as_tensor(
            norm.apply_points(ns_head_to_world(ns_moving(frame), frame)), dtype=torch.float32)[None])
        assert np.linalg.norm(found - uv[0, 0].numpy()) < 0.3
        assert ds.has_masks("017") and mask[SIZE // 2, SIZE // 2] > 0.99 and mask[0, 0] < 0.01


def test_nersemble_cameras_in_flame_head_space(ners_v2):
    """head_pose=flame: the cameras move with the tracked head, so points fixed on the head stay put."""
    root, _ = ners_v2
    ds = open_dataset(f"nersemble:{root}?head_pose=flame", SIZE)
    norm = ds.normalisation("017")  # head space -> ours: the head centre is the origin, the axes are the head's
    assert np.linalg.norm(norm.apply_points(np.zeros(3))) < 1e-3 and np.allclose(norm.rotation, np.eye(3), atol=1e-6)
    points = {n: norm.apply_points(p) for n, p in DOTS.items()}  # the same for every frame
    for frame in (0, 3):
        t = ds.timestep_of("017", "EXP-2-eyes", frame)
        assert max(reprojection_errors(ds, "017", t, points)) < 0.3
    c0, c3 = (ds.cameras("017", ds.timestep_of("017", "EXP-2-eyes", f)).c2w for f in (0, 3))
    assert (c0 - c3).abs().max() > 0.05  # the cameras moved, not the head


def test_nersemble_v1_frame_folders(tmp_path):
    raw = write_nersemble_v1(tmp_path)
    ds = open_dataset(f"nersemble:{tmp_path / '030'}", SIZE)
    assert ds.all_subjects() == ["030"] and ds.expression_space == ("none", 0)
    assert [ds.locate("030", t) for t in ds.timesteps("030")] == [("EMO-1-shout+laugh", 0), ("EMO-1-shout+laugh", 1)]
    norm = ds.normalisation("030")
    t = ds.timesteps("030")[1]
    points = {n: norm.apply_points(ns_head_to_world(p, 1)) for n, p in DOTS.items()}
    assert raw["factor"] == 2 and max(reprojection_errors(ds, "030", t, points)) < 0.3
    assert ds.codes("030", t) is None and ds.has_masks("030")


def write_spec7(root: Path, subjects: int = 3, timesteps: int = 2, cameras: int = 3, res: int = 32) -> None:
    """A SPEC section 7 dataset laid out as `avat3r synth` writes it, with random RGBA images (fast)."""
    from stages.cameras import frames_from_cameras, write_transforms
    from stages.datasets.splits import split_subjects
    from stages.io import write_image
    from stages.synth.studio import studio_cameras

    rng = np.random.default_rng(0)
    names = [f"subject_{i:03d}" for i in range(subjects)]
    for name in names:
        cams = studio_cameras(cameras, res, seed=1)
        codes = rng.random((timesteps, 52)).round(5)
        paths, extras = [], []
        for t in range(timesteps):
            for c in range(cameras):
                rgba = rng.random((res, res, 4)).astype(np.float32)
                rgba[..., 3] = rgba[..., 3] > 0.5
                write_image(root / name / "images" / f"{t:03d}_{c:02d}.png", rgba)
                paths.append(f"images/{t:03d}_{c:02d}.png")
                extras.append({"timestep": t, "camera": c, "expression": codes[t].tolist()})
        frames = frames_from_cameras(cams[[c for _ in range(timesteps) for c in range(cameras)]], paths, extras)
        write_transforms(root / name / "transforms.json", frames, {"expression_space": "arkit52"})
    (root / "dataset.json").write_text(json.dumps({"expression_space": "arkit52", "expression_dim": 52,
                                                   "subjects": names, "split": split_subjects(names, 0)}))


def test_synth_dataset_through_the_same_interface(tmp_path):
    write_spec7(tmp_path / "ds")
    ds = open_dataset(tmp_path / "ds", 16)
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert ds.expression_space == ("arkit52", 52)
    assert ds.subjects("test") == meta["split"]["test"] and ds.subjects("all") == meta["subjects"]
    name = ds.subjects("all")[0]
    rgb, mask = ds.load(name, 1, 2)
    assert rgb.shape == (16, 16, 3) and mask.shape == (16, 16) and 0 < mask.mean() < 1
    cams = ds.cameras(name, 1)
    assert (cams.width, cams.height, len(cams)) == (16, 16, 3)
    frames = json.loads((tmp_path / "ds" / name / "transforms.json").read_text())["frames"]
    want = next(f for f in frames if f["timestep"] == 1 and f["camera"] == 2)["expression"]
    np.testing.assert_allclose(ds.codes(name, 1), want, atol=1e-6)


def test_datasets_pickle_and_run_in_dataloader_workers(ava):
    root, _ = ava
    ds = open_dataset(f"ava256:{root}", SIZE)
    ref = ds.load(AVA_CAPTURE, 7, 3)[0]  # opens the zips in this process first
    clone = pickle.loads(pickle.dumps(ds))

    class Frames(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.from_numpy(clone.load(AVA_CAPTURE, AVA_FRAMES[i % 3], 3)[0])

    out = list(torch.utils.data.DataLoader(Frames(), batch_size=None, num_workers=2))
    assert torch.equal(out[1], torch.from_numpy(ref))


def test_rig_helpers_match_the_per_camera_versions():
    """The vectorised rig helpers give exactly what the per-camera functions of stages.capture give."""
    from stages.capture.imaging import crop_cameras, head_square
    from stages.datasets.views import cropped_rig, head_crops, opencv_rig

    cams, w, h = ns_rig(2)
    w2c = np.stack([c["w2c"] for c in cams.values()])
    rig = opencv_rig(w2c, np.stack([c["K"] for c in cams.values()]), w, h, 2.0)
    one = Cameras.from_opencv(torch.as_tensor(w2c[:1]), torch.as_tensor(cams[NS_SERIALS[0]]["K"]), 2 * w, 2 * h)
    one = one.resized(w, h)
    assert torch.allclose(rig[0].K().float(), one.K(), atol=1e-4) and torch.allclose(rig.c2w[:1].float(), one.c2w,
                                                                                     atol=1e-5)
    rig = rig.transformed(1.0, torch.as_tensor(NS_CENTRE))  # head centre at the origin
    crops = head_crops(rig, 0.17, "here")
    for i, c in enumerate(crops):
        ref = head_square(rig[i], 0.17)
        assert (c.x0, c.y0, c.size) == (ref.x0, ref.y0, ref.size)
        assert np.allclose(c.centre, ref.centre) and np.isclose(c.radius, ref.radius)
    got = cropped_rig(rig, crops, 40)
    want = Cameras.cat([crop_cameras(rig[i].to(dtype=torch.float32), c, 40) for i, c in enumerate(crops)])
    assert torch.allclose(got.K(), want.K(), atol=1e-4) and (got.width, got.height) == (40, 40)
