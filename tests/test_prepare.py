"""`avat3r prepare`: photos + cameras -> capture folder.

The scene is a toy head made of shaded spheres with known geometry, ray-traced from 4 cameras placed in a head
frame and then written in an arbitrary source world (rotated, moved, in millimetres). Prepared captures are
checked against re-renders of the same spheres through the prepared cameras, which tests crop, resize,
intrinsics and normalisation together.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.cameras import Cameras, frames_from_cameras, look_at, spherical_eye, write_transforms
from stages.capture import read_capture, write_capture
from stages.capture.colmap import qvec_to_rotmat
from stages.capture.imaging import undistort
from stages.capture.letterbox import letterbox, picture_area
from stages.capture.normalise import Normalisation, fit_normalisation, look_at_point
from stages.capture.prepare import PrepareOptions, prepare_capture, select_views
from stages.capture.sources import load_source
from stages.errors import BadInput
from stages.io import read_image, write_image

# (centre, radius, colour) in the head frame (metres; +y up, face along +z, subject's left at +x)
SPHERES = [((0.0, 0.0, 0.0), 0.09, (0.9, 0.7, 0.6)), ((0.035, 0.02, 0.075), 0.018, (0.1, 0.3, 0.9)),
           ((-0.035, 0.02, 0.075), 0.018, (0.1, 0.8, 0.2)), ((0.0, -0.01, 0.095), 0.015, (0.9, 0.1, 0.1)),
           ((0.0, 0.06, -0.01), 0.08, (0.3, 0.2, 0.1))]
W, H, RES = 200, 150, 48
AZ, EL = [-40.0, -10.0, 15.0, 45.0], [5.0, -10.0, 20.0, 0.0]


def trace(o: torch.Tensor, d: torch.Tensor, spheres=SPHERES) -> np.ndarray:
    """RGBA of rays (..., 3) against shaded spheres (view-independent shading, so views agree)."""
    o, d = o.double(), d.double()
    best = torch.full(o.shape[:-1], math.inf, dtype=torch.float64)
    rgb = torch.zeros(*o.shape[:-1], 3, dtype=torch.float64)
    light = torch.tensor([0.3, 0.5, 0.8], dtype=torch.float64)
    light = light / light.norm()
    for c, r, col in spheres:
        oc = o - torch.tensor(c, dtype=torch.float64)
        b = (oc * d).sum(-1)
        disc = b * b - (oc * oc).sum(-1) + r * r
        t = -b - disc.clamp(min=0).sqrt()
        hit = (disc > 0) & (t > 0) & (t < best)
        shade = 0.55 + 0.45 * (((oc + t[..., None] * d) / r) @ light).clamp(min=0)
        rgb[hit] = (torch.tensor(col, dtype=torch.float64) * shade[..., None])[hit]
        best = torch.where(hit, t, best)
    return torch.cat([rgb, torch.isfinite(best)[..., None].double()], -1).float().numpy()


def render(cams: Cameras, supersample: int = 1) -> np.ndarray:
    """(N, H, W, 4) renders; supersampled renders are box-filtered, like an area resize."""
    o, d = cams.to(dtype=torch.float64).rays(cams.height * supersample, cams.width * supersample)
    img = trace(o, d)
    n, h, w, c = img.shape
    return img.reshape(n, h // supersample, supersample, w // supersample, supersample, c).mean((2, 4))


def head_cameras(w: int = W, h: int = H, f: float = 380.0) -> Cameras:
    """Four upright cameras 1 m from the head centre, looking at it, principal point off-centre."""
    c2w = look_at(spherical_eye(torch.tensor(AZ), torch.tensor(EL), 1.0))
    n = len(AZ)
    return Cameras(c2w, torch.full((n,), f), torch.full((n,), f * 1.02), torch.full((n,), w / 2 + 9.0),
                   torch.full((n,), h / 2 - 6.0), w, h)


# the source world: x_src = K_MM * R0 @ x_head + T0 (millimetres, rotated, moved)
_AX = torch.tensor([0.3, 1.0, -0.5]) / torch.tensor([0.3, 1.0, -0.5]).norm()
R0 = torch.linalg.matrix_exp(0.7 * torch.tensor([[0, -_AX[2], _AX[1]], [_AX[2], 0, -_AX[0]],
                                                  [-_AX[1], _AX[0], 0]]))
K_MM, T0 = 1000.0, torch.tensor([300.0, -2000.0, 5000.0])


def to_source(cams: Cameras) -> Cameras:
    c2w = cams.c2w.clone()
    c2w[:, :3, :3] = R0 @ cams.c2w[:, :3, :3]
    c2w[:, :3, 3] = K_MM * cams.c2w[:, :3, 3] @ R0.T + T0
    return Cameras(c2w, cams.fx, cams.fy, cams.cx, cams.cy, cams.width, cams.height)


def head_to_capture(norm: Normalisation) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) with x_capture = s R x_head + t, composing the source similarity with the normalisation."""
    R = norm.rotation @ R0.double().numpy()
    return norm.scale * K_MM, R, norm.apply_points(T0.double().numpy())


def capture_spheres(norm: Normalisation) -> list:
    s, R, t = head_to_capture(norm)
    return [(tuple(s * R @ np.array(c) + t), s * r, col) for c, r, col in SPHERES]


def write_nerfstudio(root: Path, cams: Cameras, imgs: np.ndarray, rgba: bool = True) -> Path:
    names = []
    for i, im in enumerate(imgs):
        names.append(f"images/view_{i}.png")
        write_image(root / names[-1], im if rgba else im[..., :3])
        if not rgba:
            write_image(root / "masks" / f"view_{i}.png", im[..., 3])
    extras = [{"expression": [0.1 * i, 0.5]} for i in range(len(imgs))]
    frames = frames_from_cameras(cams, names, extras)
    write_transforms(root / "transforms.json", frames, {"expression_space": "toy"})
    return root


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cams = head_cameras()
    imgs = render(cams)
    root = write_nerfstudio(tmp_path_factory.mktemp("ns"), to_source(cams), imgs)
    return {"head_cams": cams, "imgs": imgs, "src": root}


@pytest.fixture(scope="module")
def prepared(scene: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("prep") / "capture"
    result = prepare_capture(scene["src"], out, PrepareOptions(res=RES))
    return {"out": out, "result": result, "cap": read_capture(out)}


def test_square_images_and_normalised_cameras(prepared: dict) -> None:
    cap, norm = prepared["cap"], prepared["result"].normalisation
    assert cap.images.shape == (4, RES, RES, 3) and cap.cameras.width == cap.cameras.height == RES
    centre, pinned = look_at_point(cap.cameras)
    assert pinned and np.abs(centre).max() < 1e-4  # the common look-at point is the origin
    assert abs(float(cap.cameras.centers().norm(dim=-1).mean()) - 1.0) < 1e-5  # mean distance 1
    _, R, _ = head_to_capture(norm)
    assert np.allclose(R @ [0, 1, 0], [0, 1, 0], atol=1e-4)  # the head's up is +y
    # +z points toward the mean camera position, horizontally: the cameras' mean azimuth in the head frame
    mean_az = math.atan2(*(R.T @ [0, 0, 1])[[0, 2]])
    head_eyes = spherical_eye(torch.tensor(AZ), torch.tensor(EL), 1.0).mean(0).double().numpy()
    assert abs(mean_az - math.atan2(head_eyes[0], head_eyes[2])) < 1e-4
    # the recorded transform is exactly what maps the source cameras to the capture's (before intrinsics)
    meta = json.loads((prepared["out"] / "transforms.json").read_text())
    assert np.allclose(meta["normalisation"]["rotation"], norm.rotation)
    assert meta["prepare"]["mask"] == "alpha"


def test_images_match_rerender_through_new_cameras(prepared: dict) -> None:
    cap, norm = prepared["cap"], prepared["result"].normalisation
    s, R, t = head_to_capture(norm)
    # put the capture cameras back in the head frame and re-render the known spheres through them
    c2w = cap.cameras.c2w.double().numpy().copy()
    c2w[:, :3, :3] = R.T @ c2w[:, :3, :3]
    c2w[:, :3, 3] = (c2w[:, :3, 3] - t) @ R / s
    back = replace(cap.cameras, c2w=torch.from_numpy(c2w).float())
    ref = render(back, supersample=4)
    assert np.abs(cap.images.numpy() - ref[..., :3]).mean() < 0.01
    assert np.abs(cap.masks.numpy() - ref[..., 3]).mean() < 0.01
    # the same check in the capture frame: the spheres moved by the recorded normalisation
    o, d = cap.cameras.to(dtype=torch.float64).rays()
    assert np.abs(trace(o, d, capture_spheres(norm))[..., 3] - ref[..., 3]).mean() < 0.02


def test_point_reprojects_to_same_content(scene: dict, prepared: dict) -> None:
    """A point on the head seen through the source cameras and through the prepared ones has one colour."""
    cap, norm = prepared["cap"], prepared["result"].normalisation
    src_cams = to_source(scene["head_cams"])
    head = np.array(SPHERES[0][0]) + np.array([0.0, -0.04, 0.08])  # a point on the cheek, facing the cameras
    p_src = torch.tensor(K_MM * R0.double().numpy() @ head + T0.double().numpy()).float()
    p_cap = torch.tensor(norm.apply_points(p_src.double().numpy())).float()
    uv_src, _ = src_cams.project(p_src[None])
    uv_cap, _ = cap.cameras.project(p_cap[None])
    for i in range(4):
        a = scene["imgs"][i][int(uv_src[i, 0, 1]), int(uv_src[i, 0, 0]), :3]
        b = cap.images[i, int(uv_cap[i, 0, 1]), int(uv_cap[i, 0, 0])].numpy()
        assert np.abs(a - b).max() < 0.06
    # the head centre lands at the image centre (the crop is centred on it)
    uv0, _ = cap.cameras.project(torch.zeros(1, 3))
    assert (uv0 - RES / 2).abs().max() < 0.5 * RES / 60


def test_masks_from_folder_and_expressions_carried(scene: dict, prepared: dict, tmp_path: Path) -> None:
    src = write_nerfstudio(tmp_path / "rgb", to_source(scene["head_cams"]), scene["imgs"], rgba=False)
    result = prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES))
    cap = read_capture(tmp_path / "cap")
    assert result.mask_kind == "folder" and cap.has_masks
    assert np.abs(cap.masks.numpy() - prepared["cap"].masks.numpy()).max() < 2 / 255
    assert cap.expression_space == "toy"
    assert torch.allclose(cap.expressions, torch.tensor([[0.1 * i, 0.5] for i in range(4)]))


def test_no_mask_warns_and_keeps_padding_transparent(scene: dict, tmp_path: Path) -> None:
    warned: list[str] = []
    cams = head_cameras()
    cams.cx[:] = 20.0  # the head sits near the left edge: its square leaves the photo, so padding appears
    src = write_nerfstudio(tmp_path / "src", to_source(cams), render(cams), rgba=False)
    for p in (src / "masks").iterdir():
        p.unlink()
    result = prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES), warn=warned.append)
    cap = read_capture(tmp_path / "cap")
    assert result.mask_kind == "none" and warned and "background" in warned[0]
    m = cap.masks.numpy()
    assert m[:, :, : RES // 8].max() < 0.01 and m[:, :, RES // 2:].min() > 0.99  # padding only


def test_grabcut_finds_head_on_plain_background(scene: dict, prepared: dict, tmp_path: Path) -> None:
    imgs = scene["imgs"].copy()
    bg = np.array([0.55, 0.6, 0.65], np.float32)
    imgs[..., :3] = imgs[..., :3] * imgs[..., 3:] + bg * (1 - imgs[..., 3:])
    src = write_nerfstudio(tmp_path / "src", to_source(scene["head_cams"]), imgs, rgba=False)
    for p in (src / "masks").iterdir():
        p.unlink()
    prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES, mask="grabcut", seed=3))
    got = read_capture(tmp_path / "cap").masks.numpy() > 0.5
    want = prepared["cap"].masks.numpy() > 0.5  # the true alpha, through the same crop
    iou = (got & want).sum() / (got | want).sum()
    assert iou > 0.9
    prepare_capture(src, tmp_path / "again", PrepareOptions(res=RES, mask="grabcut", seed=3))
    assert torch.equal(read_capture(tmp_path / "again").masks, read_capture(tmp_path / "cap").masks)


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


def write_colmap(root: Path, cams: Cameras, imgs: np.ndarray, models: list[str],
                 dist: list[float] | None = None, model_dir: str = "sparse/0") -> Path:
    """A COLMAP text model of `cams` (OpenCV world-to-camera; COLMAP's pixel centres are at +0.5 as ours)."""
    (root / model_dir).mkdir(parents=True, exist_ok=True)
    cam_lines, img_lines = ["# Camera list"], ["# Image list", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    w2c = cams.viewmats().double().numpy()
    for i, model in enumerate(models):
        fx, fy, cx, cy = (float(v[i]) for v in (cams.fx, cams.fy, cams.cx, cams.cy))
        params = {"PINHOLE": [fx, fy, cx, cy], "SIMPLE_RADIAL": [fx, cx, cy, 0.0],
                  "OPENCV": [fx, fy, cx, cy, *(dist or [0.0] * 4)],
                  "OPENCV_FISHEYE": [fx, fy, cx, cy, 0, 0, 0, 0]}
        cam_lines.append(f"{i + 1} {model} {cams.width} {cams.height} " + " ".join(str(float(v))
                                                                                   for v in params[model]))
        q, t = _rotmat_to_qvec(w2c[i, :3, :3]), w2c[i, :3, 3]
        img_lines += [f"{i + 1} " + " ".join(str(float(v)) for v in [*q, *t]) + f" {i + 1} view_{i}.png", ""]
        write_image(root / "images" / f"view_{i}.png", imgs[i])
    (root / model_dir / "cameras.txt").write_text("\n".join(cam_lines) + "\n")
    (root / model_dir / "images.txt").write_text("\n".join(img_lines) + "\n")
    return root


def test_qvec_to_rotmat_matches_axis_angle() -> None:
    a = 0.4
    q = np.array([math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)])  # rotation about z by a
    c, s = math.cos(a), math.sin(a)
    assert np.allclose(qvec_to_rotmat(q), [[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_colmap_text_model_gives_same_capture(scene: dict, prepared: dict, tmp_path: Path) -> None:
    src = write_colmap(tmp_path / "colmap", to_source(scene["head_cams"]), scene["imgs"],
                       ["PINHOLE", "PINHOLE", "OPENCV", "PINHOLE"])
    prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES))
    cap, ref = read_capture(tmp_path / "cap"), prepared["cap"]
    assert torch.allclose(cap.cameras.c2w, ref.cameras.c2w, atol=1e-4)
    assert torch.allclose(cap.cameras.K(), ref.cameras.K(), atol=1e-3)
    assert (cap.images - ref.images).abs().max() < 2 / 255


def distort(x: np.ndarray, y: np.ndarray, k1: float, k2: float, p1: float, p2: float) -> tuple:
    """COLMAP's OPENCV lens model on normalised coordinates (written out here, independent of OpenCV)."""
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2 * r2
    return x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y


def ideal_coords(xd: np.ndarray, yd: np.ndarray, coeffs: tuple) -> tuple:
    """Invert `distort` by fixed-point iteration (it contracts for the mild lenses used here)."""
    x, y = xd.copy(), yd.copy()
    for _ in range(300):
        dx, dy = distort(x, y, *coeffs)
        x, y = x + (xd - dx), y + (yd - dy)
    assert np.abs(np.stack(distort(x, y, *coeffs)) - np.stack([xd, yd])).max() < 1e-9
    return x, y


def test_undistort_pixel_exact() -> None:
    """A smooth pattern photographed through a strong lens comes back as the pinhole view: checks OpenCV's
    coefficient order and the half-pixel shift between OpenCV and our pixel convention."""
    w, h, f, cx, cy, coeffs = 120, 90, 80.0, 63.5, 44.0, (-0.3, 0.08, 0.002, -0.001)
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # pixel centres, our convention

    def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 + 0.5 * np.sin(15 * x) * np.cos(12 * y)

    photo = pattern(*ideal_coords((jj - cx) / f, (ii - cy) / f, coeffs)).astype(np.float32)
    cam = Cameras(torch.eye(4)[None], f, f, cx, cy, w, h)
    out = undistort(np.stack([photo, np.ones_like(photo)], -1), cam, np.array(coeffs))
    want = pattern((jj - cx) / f, (ii - cy) / f)
    ok = out[..., 1] > 0.999
    assert ok.mean() > 0.9
    err = np.abs(out[..., 0] - want)[ok]
    assert err.max() < 0.015 and err.mean() < 0.003  # a half-pixel slip gives 0.039 / 0.0058
    assert np.abs(photo - want)[ok].mean() > 0.1  # the lens really moved things


def test_colmap_distortion_is_removed(scene: dict, prepared: dict, tmp_path: Path) -> None:
    """Photos taken through a strong barrel lens (OPENCV model) come out like the pinhole ones."""
    cams = to_source(scene["head_cams"])
    coeffs = (-1.0, 0.2, 0.002, -0.001)
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    imgs = []
    for i in range(4):
        fx, fy, cx, cy = (float(v[i]) for v in (cams.fx, cams.fy, cams.cx, cams.cy))
        x, y = ideal_coords((jj - cx) / fx, (ii - cy) / fy, coeffs)  # each photo pixel's ideal ray
        hc = scene["head_cams"].c2w[i].double()
        d = torch.from_numpy(np.stack([x, -y, -np.ones_like(x)], -1)) @ hc[:3, :3].T
        imgs.append(trace(hc[:3, 3].expand_as(d), d / d.norm(dim=-1, keepdim=True)))
    src = write_colmap(tmp_path / "colmap", cams, np.stack(imgs), ["OPENCV"] * 4, list(coeffs), model_dir=".")
    assert np.allclose(load_source(src).views[2].distortion, coeffs)
    prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES))
    cap, ref = read_capture(tmp_path / "cap"), prepared["cap"]
    assert (cap.images - ref.images).abs().mean() < 0.003
    assert (cap.masks - ref.masks).abs().mean() < 0.006  # 0.004 measured; 0.009 when the lens is left in


def test_views_picks_spread_cameras() -> None:
    az = torch.tensor([0.0, 2.0, 4.0, 60.0, -60.0, -6.0])
    cams = Cameras(look_at(spherical_eye(az, torch.zeros(6), 1.0)), 500.0, 500.0, 50.0, 50.0, 100, 100)
    assert select_views(cams, 3) == [0, 3, 4]  # the most central one, then the two extremes


def test_views_option_takes_a_spread_subset(tmp_path: Path) -> None:
    az = torch.linspace(-60.0, 60.0, 18)  # more photos than a capture takes
    cams = Cameras(look_at(spherical_eye(az, torch.zeros(18), 1.0)), 150.0, 150.0, 40.0, 30.0, 80, 60)
    src = write_nerfstudio(tmp_path / "src", to_source(cams), render(cams))
    with pytest.raises(BadInput, match="pass --views N"):
        prepare_capture(src, tmp_path / "cap", PrepareOptions(res=16))
    prepare_capture(src, tmp_path / "cap", PrepareOptions(res=16, views=3))
    meta = json.loads((tmp_path / "cap" / "transforms.json").read_text())
    assert meta["prepare"]["source_files"] == ["images/view_0.png", "images/view_8.png", "images/view_17.png"]
    assert len(read_capture(tmp_path / "cap")) == 3


def test_mask_sources_are_consistent(scene: dict, tmp_path: Path) -> None:
    src = write_nerfstudio(tmp_path / "src", to_source(scene["head_cams"]), scene["imgs"], rgba=False)
    (src / "masks" / "view_1.png").unlink()
    with pytest.raises(BadInput, match="only some photos have masks"):
        prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES))
    write_image(src / "masks" / "view_1.png", (scene["imgs"][1][..., 3] > 0.5).astype(np.uint8))  # 0/1 mask
    prepare_capture(src, tmp_path / "cap", PrepareOptions(res=RES))
    assert read_capture(tmp_path / "cap").masks[1].max() > 0.99  # read as 0/255


def test_single_view_and_keep_frame(scene: dict, tmp_path: Path) -> None:
    norm = fit_normalisation(scene["head_cams"][0], "auto")  # one view: the head is put 1 unit ahead
    assert np.allclose(norm.apply(scene["head_cams"][0]).centers().norm(), 1.0)
    keep = fit_normalisation(scene["head_cams"], "metric", keep=True)
    assert np.allclose(keep.rotation, np.eye(3)) and keep.scale == 1.0
    with pytest.raises(BadInput):
        fit_normalisation(scene["head_cams"], "-2")


# ----- the CLI: bad input ends with exit status 2, one sentence, and nothing written ------------------------
runner = CliRunner()


def _fails(args: list[str], out: Path, needle: str) -> None:
    res = runner.invoke(app, ["prepare", *args, "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists() and not any(p.name.startswith(f".{out.name}") for p in out.parent.iterdir())


def test_cli_ok(scene: dict, tmp_path: Path) -> None:
    args = ["prepare", str(scene["src"]), "--out", str(tmp_path / "cap"), "--res", "32", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "4 views at 32x32" in res.output
    assert read_image(tmp_path / "cap" / "images" / "000.png").shape == (32, 32, 4)


def test_cli_bad_inputs(scene: dict, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cap"
    (tmp_path / "out").mkdir()
    (tmp_path / "empty").mkdir()
    _fails([str(tmp_path / "empty")], out, "no transforms.json")
    # more views than a capture takes
    many = head_cameras()
    many = Cameras.cat([many] * 5)
    frames = frames_from_cameras(to_source(many), ["images/view_0.png"] * len(many))
    (tmp_path / "many").mkdir()
    write_transforms(tmp_path / "many" / "transforms.json", frames)
    _fails([str(tmp_path / "many")], out, "at most 16")
    # an unreadable image
    bad = write_nerfstudio(tmp_path / "bad", to_source(scene["head_cams"]), scene["imgs"])
    (bad / "images" / "view_2.png").write_bytes(b"not a png at all")
    _fails([str(bad)], out, "cannot read image")
    # cameras that do not match the images
    mism = write_nerfstudio(tmp_path / "mism", to_source(scene["head_cams"]), scene["imgs"])
    write_image(mism / "images" / "view_1.png", scene["imgs"][1][:, 10:])
    _fails([str(mism)], out, "gives its camera as")
    # a non-pinhole COLMAP camera
    fish = write_colmap(tmp_path / "fish", to_source(scene["head_cams"]), scene["imgs"],
                        ["PINHOLE", "OPENCV_FISHEYE", "PINHOLE", "PINHOLE"])
    _fails([str(fish)], out, "OPENCV_FISHEYE is not supported")
    # options
    _fails([str(scene["src"]), "--views", "17"], out, "--views must be between")
    _fails([str(scene["src"]), "--mask", "magic"], out, "--mask must be one of")
    _fails([str(scene["src"]), "--scale", "big"], out, "--scale must be")
    _fails([str(mism), "--mask", "folder"], out, "--mask folder")


# ----- round trip: a capture written out as photos + transforms.json comes back the same -------------------
def capture_as_photos(cap_dir: Path, root: Path, ox: int = 13, oy: int = 9) -> tuple[Path, float]:
    """Write a square capture as bigger non-square RGBA photos (the capture pasted at (ox, oy)) with cameras
    in the arbitrary source world; returns the folder and the --head-radius that crops the pasted window."""
    cap = read_capture(cap_dir)
    n, s = len(cap), cap.images.shape[1]
    canvas = np.zeros((n, s + oy + 7, s + ox + 23, 4), np.float32)
    canvas[:, oy:oy + s, ox:ox + s, :3] = cap.images.numpy()
    canvas[:, oy:oy + s, ox:ox + s, 3] = cap.masks.numpy()
    cams = cap.cameras
    h, w = canvas.shape[1:3]
    photo_cams = replace(cams, cx=cams.cx + ox, cy=cams.cy + oy, width=w, height=h)
    names = [f"images/photo_{i}.png" for i in range(n)]
    for name, im in zip(names, canvas, strict=True):
        write_image(root / name, im)
    extras = [{"expression": e.tolist()} for e in cap.expressions] if cap.expressions is not None else None
    write_transforms(root / "transforms.json", frames_from_cameras(to_source(photo_cams), names, extras))
    # the sphere whose outline spans just under the capture's width seen from 1 unit (the mean distance)
    a = (s / 2 - 0.05) / float(cams.fx[0])
    return root, a / math.sqrt(1 + a * a)


def check_round_trip(cap_dir: Path, tmp_path: Path) -> None:
    orig = read_capture(cap_dir)
    src, radius = capture_as_photos(cap_dir, tmp_path / "photos")
    res = orig.images.shape[1]
    result = prepare_capture(src, tmp_path / "back", PrepareOptions(res=res, head_radius=radius))
    back = read_capture(tmp_path / "back")
    assert (back.images - orig.images).abs().max() == 0 and (back.masks - orig.masks).abs().max() == 0
    assert torch.allclose(back.cameras.K(), orig.cameras.K(), atol=1e-4)
    # cameras equal up to the normalisation: x_back = s R x_orig + t, known from the recorded transform
    s, R, t = head_to_capture(result.normalisation)
    c2w = orig.cameras.c2w.double().numpy()
    assert np.allclose(back.cameras.c2w[:, :3, :3].double().numpy(), R @ c2w[:, :3, :3], atol=1e-5)
    assert np.allclose(back.cameras.c2w[:, :3, 3].double().numpy(), s * c2w[:, :3, 3] @ R.T + t, atol=1e-5)
    # the original rig looks at its origin with upright cameras: only the scale and a turn about +y remain
    assert abs(s * float(orig.cameras.centers().norm(dim=-1).mean()) - 1) < 1e-5
    assert np.allclose(t, 0, atol=1e-5) and np.allclose(R @ [0, 1, 0], [0, 1, 0], atol=1e-6)
    if orig.expressions is not None:
        assert torch.allclose(back.expressions, orig.expressions)


def test_round_trip_of_a_capture(tmp_path: Path) -> None:
    az = torch.tensor([-50.0, -15.0, 10.0, 40.0])
    cams = Cameras(look_at(spherical_eye(az, torch.tensor([10.0, -5.0, 0.0, 15.0]), 1.0)), 200.0, 200.0, 32.0,
                   32.0, 64, 64)
    imgs = render(cams)
    codes = np.eye(4, 52, dtype=np.float32)
    write_capture(tmp_path / "orig", imgs[..., :3], imgs[..., 3], cams, codes, "arkit52")
    check_round_trip(tmp_path / "orig", tmp_path)


@pytest.mark.slow
def test_cli_synthetic_and_its_round_trip(tmp_path: Path) -> None:
    """`prepare --synthetic` writes a capture + targets; written out as photos, it comes back the same."""
    args = ["prepare", "--synthetic", "--seed", "3", "--res", "48", "--out", str(tmp_path / "syn"), "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cap = read_capture(tmp_path / "syn")
    assert len(cap) == 4 and cap.images.shape[1] == 48 and (tmp_path / "syn" / "targets").is_dir()
    assert cap.expressions is not None and len({tuple(e.tolist()) for e in cap.expressions}) == 4
    check_round_trip(tmp_path / "syn", tmp_path)


def test_letterbox_bars_are_found_on_every_side_and_only_there() -> None:
    rng = np.random.default_rng(0)
    img = rng.uniform(0.2, 0.9, (60, 80, 3)).astype(np.float32)
    img[:5] = 0.0  # top bar
    img[-7:] = 10 / 255  # bottom bar at video black
    img[:, :3] = 0.0  # left bar
    assert letterbox(img) == (5, 7, 3, 0)
    area = picture_area(img)
    assert area[:5].max() == 0 and area[-7:].max() == 0 and area[:, :3].max() == 0 and area[10:50, 5:].min() == 1
    assert letterbox(np.zeros((20, 20, 3), np.float32)) == (0, 0, 0, 0)  # all black: no picture to bound
    dark_shirt = rng.uniform(0.2, 0.9, (60, 80, 3)).astype(np.float32)
    dark_shirt[-10:] = rng.uniform(0.0, 0.2, (10, 80, 3))  # dark but textured: a photographed surface
    dark_shirt[:1] = 0.0  # one black row is too thin to be called a bar
    assert letterbox(dark_shirt) == (0, 0, 0, 0)


def test_letterbox_bars_inside_a_supplied_mask_become_padding(scene: dict, tmp_path: Path) -> None:
    cams = head_cameras()
    cams.cy[:] = H - 30.0  # the head sits low, so its square reaches the photo's bottom rows
    imgs = render(cams)
    imgs[..., :3] += 0.5 * (1 - imgs[..., 3:])  # a grey wall behind the head: only the bar is black
    imgs[..., 3] = 1.0  # masks that take in everything, as a segmenter touching the bar would
    barred = imgs.copy()
    barred[:, -12:, :, :3] = 0.0
    captures = {}
    for name, pictures, bar_in_mask in (("plain", imgs, True), ("barred", barred, True),
                                        ("masked_out", barred, False)):
        frames = pictures.copy()
        if not bar_in_mask:
            frames[:, -12:, :, 3] = 0.0
        src = write_nerfstudio(tmp_path / name, to_source(cams), frames, rgba=False)
        prepare_capture(src, tmp_path / f"cap_{name}", PrepareOptions(res=RES))
        captures[name] = read_capture(tmp_path / f"cap_{name}").masks.numpy()
    # the bar is found in both barred sources, so where a pixel straddles its edge (coverage v) the source
    # that also masked it out has v * v and the other v
    barred, masked_out = captures["barred"], captures["masked_out"]
    assert np.all(barred >= masked_out - 2 / 255) and np.all(barred <= np.sqrt(masked_out) + 2 / 255)
    assert captures["barred"].sum() < captures["plain"].sum() - 4 * RES  # the bar reached the crop
