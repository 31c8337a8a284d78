"""Synthetic heads: every listed expression channel does what it says where it should, depth agrees with the
cameras, the generator is deterministic, and `avat3r synth` / the capture writer produce the promised layouts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stages.cameras import focal_for_extent, look_at, make_cameras, spherical_eye
from stages.expressions import ARKIT52, ARKIT_INDEX, arkit_code
from stages.synth import (
    HEAD_EXTENT,
    KEYPOINT_NAMES,
    LABELS,
    head_cloud,
    head_keypoints,
    make_synthetic_capture,
    render_head,
    sample_expression,
    sample_identity,
    sample_training_example,
    studio_cameras,
)
from stages.synth.raster import rasterize

SIZE = 80
ZOOM = 2.0  # frame the face, not the whole head, so that small motions cover several pixels
SEED = 18  # an identity with short hair, no beard, a middle skin tone


def front_camera(size: int = SIZE, zoom: float = ZOOM, azimuth: float = 0.0, elevation: float = 0.0):
    eye = spherical_eye(torch.tensor([azimuth]), torch.tensor([elevation]), 1.0)
    c2w = look_at(eye, torch.tensor([0.0, -0.025, 0.0]))
    return make_cameras(c2w, focal_for_extent(HEAD_EXTENT / zoom, 1.0, size), size)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The machine is shared: one intra-op thread is as fast here and does not fight other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def identity():
    return sample_identity(SEED)


@pytest.fixture(scope="module")
def neutral(identity):
    return render_head(identity, np.zeros(52, np.float32), front_camera(), labels=True)


def render(identity, **weights):
    return render_head(identity, arkit_code(**weights), front_camera(), labels=True)


def kp_pixels(identity, code) -> dict[str, np.ndarray]:
    uv, _ = front_camera().project(head_keypoints(identity, code))
    return {n: uv[0, i].numpy() for i, n in enumerate(KEYPOINT_NAMES)}


def change(a: dict, b: dict) -> torch.Tensor:
    """Per-pixel colour change between two renders (composited on black)."""
    ca = a["rgb"][0] * a["alpha"][0, ..., None]
    cb = b["rgb"][0] * b["alpha"][0, ..., None]
    return (ca - cb).abs().sum(-1)


def box_mass(diff: torch.Tensor, centre, half_w: float, half_h: float) -> float:
    u, v = centre
    H, W = diff.shape
    j0, j1 = max(0, int(u - half_w)), min(W, int(u + half_w) + 1)
    i0, i1 = max(0, int(v - half_h)), min(H, int(v + half_h) + 1)
    return float(diff[i0:i1, j0:j1].sum())


# ----- geometry and conventions --------------------------------------------------------------------------------
def test_subject_left_is_image_right_in_a_frontal_view(identity):
    """The subject's left (+x) appears on the image's right for a camera in front of the face."""
    kp = kp_pixels(identity, np.zeros(52, np.float32))
    assert kp["left_pupil"][0] > SIZE / 2 > kp["right_pupil"][0]
    assert kp["mouth_left"][0] > kp["mouth_right"][0]
    # the face is upright: eyes above the nose tip above the mouth above the chin (image rows grow downward)
    assert kp["left_pupil"][1] < kp["nose_tip"][1] < kp["upper_lip_top"][1] < kp["chin"][1]


def test_render_outputs_are_well_formed(neutral):
    assert neutral["rgb"].shape == (1, SIZE, SIZE, 3) and neutral["alpha"].shape == (1, SIZE, SIZE)
    assert neutral["depth"].shape == (1, SIZE, SIZE) and neutral["label"].shape == (1, SIZE, SIZE)
    a = neutral["alpha"]
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float(neutral["rgb"].min()) >= 0 and float(neutral["rgb"].max()) <= 1
    # anti-aliasing: some edge pixels are partly covered; depth is zero exactly where nothing was drawn
    assert int(((a > 0.05) & (a < 0.95)).sum()) > 10
    assert bool(((neutral["depth"] > 0) == (a > 0)).all())
    # a frontal face: eyes are visible, nothing of the mouth interior is
    lab = neutral["label"]
    assert int((lab == LABELS["eye"]).sum()) > 20
    assert int((lab == LABELS["teeth"]).sum() + (lab == LABELS["mouth"]).sum()) == 0


# ----- expression channels -------------------------------------------------------------------------------------
def test_jaw_open_darkens_the_mouth_and_drops_the_chin(identity, neutral):
    out = render(identity, jawOpen=1.0)
    kp0, kp1 = kp_pixels(identity, np.zeros(52)), kp_pixels(identity, arkit_code(jawOpen=1.0))
    lab = out["label"][0]
    inside = (lab == LABELS["mouth"]) | (lab == LABELS["teeth"]) | (lab == LABELS["tongue"])
    assert int(inside.sum()) > 40
    # the mouth region (between the lips' rest position and the dropped lower lip) got darker
    u, v0 = kp0["upper_lip_bottom"]
    v1 = kp1["lower_lip_top"][1]
    rows = slice(int(v0) + 1, int(v1))
    cols = slice(int(u) - 4, int(u) + 5)
    lum0 = (neutral["rgb"][0] * neutral["alpha"][0, ..., None])[rows, cols].mean()
    lum1 = (out["rgb"][0] * out["alpha"][0, ..., None])[rows, cols].mean()
    assert float(lum1) < 0.6 * float(lum0)
    assert kp1["chin"][1] > kp0["chin"][1] + 3  # the chin moves down by several pixels


@pytest.mark.parametrize("side", ["Left", "Right"])
def test_blink_covers_the_eye_and_wide_opens_it(identity, neutral, side):
    kp = kp_pixels(identity, np.zeros(52))
    pupil = kp[f"{side.lower()}_pupil"]
    other = kp[f"{'right' if side == 'Left' else 'left'}_pupil"]

    def eye_pixels(out, at):
        lab = out["label"][0]
        u, v = at
        return int((lab[int(v) - 6:int(v) + 7, int(u) - 8:int(u) + 9] == LABELS["eye"]).sum())

    blink = render(identity, **{f"eyeBlink{side}": 1.0})
    wide = render(identity, **{f"eyeWide{side}": 1.0})
    n0 = eye_pixels(neutral, pupil)
    assert n0 > 10
    assert eye_pixels(blink, pupil) <= 0.1 * n0  # sclera and iris vanish behind the lid
    assert eye_pixels(blink, other) >= 0.9 * eye_pixels(neutral, other)  # the other eye stays open
    assert eye_pixels(wide, pupil) > 1.15 * n0


@pytest.mark.parametrize("side,sign", [("Left", 1.0), ("Right", -1.0)])
def test_smile_and_frown_move_the_corner_on_their_side(identity, neutral, side, sign):
    name = f"mouth_{side.lower()}"
    kp0 = kp_pixels(identity, np.zeros(52))
    smile, frown = arkit_code(**{f"mouthSmile{side}": 1.0}), arkit_code(**{f"mouthFrown{side}": 1.0})
    up = kp_pixels(identity, smile)[name]
    down = kp_pixels(identity, frown)[name]
    assert up[1] < kp0[name][1] - 2  # image rows grow downward: the corner rises
    assert (up[0] - kp0[name][0]) * sign > 0  # and moves outward, toward its own side of the image
    assert down[1] > kp0[name][1] + 1.5
    other = "mouth_right" if side == "Left" else "mouth_left"
    assert abs(kp_pixels(identity, smile)[other][1] - kp0[other][1]) < 0.5
    # the pixels change around that corner, not the other one
    for code in (smile, frown):
        diff = change(render_head(identity, code, front_camera(), labels=True), neutral)
        near = box_mass(diff, kp0[name], 7, 7)
        far = box_mass(diff, kp0[other], 7, 7)
        assert near > 3 * far and near > 1.0


def test_pucker_narrows_the_mouth_and_funnel_opens_it(identity, neutral):
    kp0 = kp_pixels(identity, np.zeros(52))
    width0 = kp0["mouth_left"][0] - kp0["mouth_right"][0]
    kp1 = kp_pixels(identity, arkit_code(mouthPucker=1.0))
    assert kp1["mouth_left"][0] - kp1["mouth_right"][0] < 0.85 * width0
    funnel = kp_pixels(identity, arkit_code(mouthFunnel=1.0))
    assert funnel["lower_lip_top"][1] - funnel["upper_lip_bottom"][1] > 1.5  # the lips part into an O
    for w in ({"mouthPucker": 1.0}, {"mouthFunnel": 1.0}):
        diff = change(render(identity, **w), neutral)
        mouth = box_mass(diff, kp0["upper_lip_bottom"], width0 * 0.8, 8)
        assert mouth > 0.7 * float(diff.sum())


@pytest.mark.parametrize("channel,sign", [("jawLeft", 1.0), ("jawRight", -1.0)])
def test_jaw_and_mouth_sideways_move_to_that_side(identity, channel, sign):
    kp0 = kp_pixels(identity, np.zeros(52))
    kp1 = kp_pixels(identity, arkit_code(**{channel: 1.0}))
    assert (kp1["chin"][0] - kp0["chin"][0]) * sign > 1.5  # subject's left = image right
    mouth = channel.replace("jaw", "mouth")
    kp2 = kp_pixels(identity, arkit_code(**{mouth: 1.0}))
    centre = [0.5 * (k["mouth_left"][0] + k["mouth_right"][0]) for k in (kp0, kp2)]
    assert (centre[1] - centre[0]) * sign > 1.5


def test_brows(identity, neutral):
    kp0 = kp_pixels(identity, np.zeros(52))
    inner = kp_pixels(identity, arkit_code(browInnerUp=1.0))
    assert inner["left_brow_inner"][1] < kp0["left_brow_inner"][1] - 1.5
    assert inner["right_brow_inner"][1] < kp0["right_brow_inner"][1] - 1.5
    for side, other in (("Left", "right"), ("Right", "left")):
        s = side.lower()
        down = kp_pixels(identity, arkit_code(**{f"browDown{side}": 1.0}))
        assert down[f"{s}_brow_middle"][1] > kp0[f"{s}_brow_middle"][1] + 1.5
        assert abs(down[f"{other}_brow_middle"][1] - kp0[f"{other}_brow_middle"][1]) < 0.3
        outer = kp_pixels(identity, arkit_code(**{f"browOuterUp{side}": 1.0}))
        assert outer[f"{s}_brow_outer"][1] < kp0[f"{s}_brow_outer"][1] - 1.5
        diff = change(render(identity, **{f"browDown{side}": 1.0}), neutral)
        assert box_mass(diff, kp0[f"{s}_brow_middle"], 9, 6) > 3 * box_mass(diff, kp0[f"{other}_brow_middle"], 9, 6)


def test_cheek_puff_inflates_the_cheeks(identity, neutral):
    """The cheeks beside the mouth come toward a frontal camera; the nose and forehead do not."""
    kp0 = kp_pixels(identity, np.zeros(52))
    out = render_head(identity, arkit_code(cheekPuff=1.0), front_camera())
    width = kp0["mouth_left"][0] - kp0["mouth_right"][0]
    v = int(kp0["mouth_left"][1]) - 2
    for corner, sign in (("mouth_left", 1), ("mouth_right", -1)):
        u = int(kp0[corner][0] + sign * 0.45 * width)
        d0 = neutral["depth"][0, v - 2:v + 3, u - 2:u + 3].mean()
        d1 = out["depth"][0, v - 2:v + 3, u - 2:u + 3].mean()
        assert float(d0 - d1) > 0.003  # metres closer to the camera
    u, v = (int(x) for x in kp0["nose_tip"])
    assert abs(float(out["depth"][0, v, u] - neutral["depth"][0, v, u])) < 0.0005


def test_every_channel_changes_the_image_on_the_right_part_of_the_face(identity, neutral):
    """All 52 channels have a visible effect; eye/brow channels act above the nose tip, mouth/jaw/cheek ones
    below the eyes; one-sided channels act on their own side (subject's left = image right)."""
    kp0 = kp_pixels(identity, np.zeros(52))
    nose_v = kp0["nose_tip"][1]
    eye_v = 0.5 * (kp0["left_pupil"][1] + kp0["right_pupil"][1])
    centre_u = 0.5 * (kp0["left_pupil"][0] + kp0["right_pupil"][0])
    side_cam = front_camera(azimuth=60.0)
    side_neutral = render_head(identity, np.zeros(52), side_cam)
    for name in ARKIT52:
        if name == "mouthClose":  # closes the lips of an open jaw
            base = render(identity, jawOpen=0.6)
            assert float(change(render(identity, jawOpen=0.6, mouthClose=1.0), base).sum()) > 3.0
            continue
        if name == "jawForward":  # seen best from the side
            out = render_head(identity, arkit_code(jawForward=1.0), side_cam)
            assert float(change(out, side_neutral).sum()) > 5.0, name
            continue
        diff = change(render(identity, **{name: 1.0}), neutral)
        total = float(diff.sum())
        assert total > 3.0, f"{name} has no visible effect"
        rows = torch.arange(SIZE, dtype=torch.float32)[:, None]
        v = float((diff * rows).sum()) / total
        if name.startswith(("eye", "brow")):
            assert v < nose_v, name
        else:
            assert v > eye_v, name
        if name.endswith(("Left", "Right")) and name not in ("jawLeft", "jawRight", "mouthLeft", "mouthRight"):
            right_half = float(diff[:, int(centre_u):].sum())
            frac = right_half / total
            assert (frac > 0.6) if name.endswith("Left") else (frac < 0.4), (name, frac)


# ----- depth agrees with the cameras ---------------------------------------------------------------------------
def test_depth_back_projects_onto_the_surface(identity):
    cams = studio_cameras(3, 64, seed=3)
    code = arkit_code(jawOpen=0.4, mouthSmileLeft=0.6)
    out = render_head(identity, code, cams, labels=True)
    cloud = head_cloud(identity, code, spacing=0.001).points  # the same surface, sampled much more finely
    o, d = cams.rays()
    for v in range(len(cams)):
        solid = out["alpha"][v] > 0.999
        # camera-space z → distance along the ray: divide by the ray's cosine to the viewing axis
        cos = (d[v] * cams.forward_dirs()[v]).sum(-1)
        pts = (o[v] + d[v] * (out["depth"][v] / cos)[..., None])[solid]
        skin = out["label"][v][solid] == LABELS["skin"]
        pick = torch.randperm(pts.shape[0], generator=torch.Generator().manual_seed(v))[:300]
        nearest = torch.cat([torch.cdist(c, cloud).min(dim=1).values for c in pts[pick].split(50)])
        on_skin = nearest[skin[pick]]
        assert float(on_skin.median()) < 0.001  # metres; pixels here are ~5 mm wide
        assert float(torch.quantile(on_skin, 0.75)) < 0.0015
        assert float(nearest.median()) < 0.0015  # hair included
        # pixels straddling a depth edge (nose over cheek) average two surfaces; they are few
        assert float((nearest > 0.005).float().mean()) < 0.05


def test_depth_at_the_nose_tip_matches_its_keypoint(identity):
    cam = front_camera(size=128, zoom=1.5)
    out = render_head(identity, np.zeros(52), cam)
    kp = head_keypoints(identity, np.zeros(52))[KEYPOINT_NAMES.index("nose_tip")]
    uv, z = cam.project(kp[None])
    u, v = (int(x) for x in uv[0, 0])
    assert abs(float(out["depth"][0, v, u]) - float(z[0, 0])) < 0.004


def test_rasterizer_covers_a_plane_without_holes():
    """A plane sampled at the promised spacing renders solid inside, with fractional alpha at its edge."""
    from stages.synth.render import choose_spacing

    cam = front_camera(size=48, zoom=1.0)
    h, fp = choose_spacing(cam, 2)
    g = torch.arange(-0.06, 0.06, h)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    rot = math.radians(30.0)  # a rotated lattice is the worst case for coverage
    x = xx * math.cos(rot) - yy * math.sin(rot)
    y = xx * math.sin(rot) + yy * math.cos(rot)
    pts = torch.stack([x, y, torch.full_like(x, 0.05)], -1).reshape(-1, 3)
    keep = (pts[:, 0].abs() < 0.05) & (pts[:, 1].abs() < 0.05)
    pts = pts[keep]
    n = torch.tensor([[0.0, 0.0, 1.0]]).expand_as(pts)
    col = torch.ones_like(pts)
    out = rasterize(pts, n, col, col * 0, cam, footprint=fp)
    uv, _ = cam.project(torch.tensor([[-0.045, -0.045, 0.05], [0.045, 0.045, 0.05]]))
    (u0, v1), (u1, v0) = uv[0].tolist()
    inner = out["alpha"][0, int(v0) + 1:int(v1), int(u0) + 1:int(u1)]
    assert float(inner.min()) == 1.0
    # depth: where each pixel's ray meets the plane z = 0.05
    o, d = cam.rays()
    t = (0.05 - o[0, ..., 2]) / d[0, ..., 2]
    zcam = t * (d[0] * cam.forward_dirs()[0]).sum(-1)
    rows, cols = slice(int(v0) + 1, int(v1)), slice(int(u0) + 1, int(u1))
    assert torch.allclose(out["depth"][0, rows, cols], zcam[rows, cols], atol=2e-5)
    assert int(((out["alpha"][0] > 0.05) & (out["alpha"][0] < 0.95)).sum()) > 4


# ----- sampling, determinism, cameras --------------------------------------------------------------------------
def test_identity_and_expression_sampling_are_deterministic_and_varied():
    assert sample_identity(4) == sample_identity(4)
    people = [sample_identity(s) for s in range(12)]
    assert len({p.skin_color for p in people}) == 12 and len({p.hair_style for p in people}) >= 3
    tones = sorted(p.skin_tone for p in people)
    assert tones[0] < 0.3 and tones[-1] > 0.7
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = np.stack([sample_expression(g1) for _ in range(200)])
    b = np.stack([sample_expression(g2) for _ in range(200)])
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == (200, 52)
    assert a.min() >= 0 and a.max() <= 1
    active = (a > 0).sum(1)
    assert 0.03 < (active == 0).mean() < 0.25  # some neutral faces
    assert np.median(active[active > 0]) <= 4  # sparse mixes
    listed = ["jawOpen", "jawLeft", "mouthSmileLeft", "mouthPucker", "eyeBlinkRight", "browInnerUp", "cheekPuff"]
    for name in listed:
        assert (a[:, ARKIT_INDEX[name]] > 0).sum() >= 3, name
    # one-sided actions happen: left and right channels are not always equal
    assert (np.abs(a[:, ARKIT_INDEX["mouthSmileLeft"]] - a[:, ARKIT_INDEX["mouthSmileRight"]]) > 0.3).any()


def test_rendering_is_deterministic(identity):
    cams = studio_cameras(2, 48, seed=1)
    code = arkit_code(jawOpen=0.3, browDownLeft=0.7)
    a, b = render_head(identity, code, cams), render_head(identity, code, cams)
    for k in ("rgb", "alpha", "depth"):
        assert torch.equal(a[k], b[k])


def test_studio_cameras_frame_the_head_from_the_front_half():
    cams = studio_cameras(16, 64)
    c = cams.centers()
    az = torch.rad2deg(torch.atan2(c[:, 0], c[:, 2]))
    el = torch.rad2deg(torch.asin(c[:, 1] / c.norm(dim=-1)))
    assert float(az.max() - az.min()) > 150 and float(az.abs().max()) <= 100.5
    assert float(el.min()) >= -25.5 and float(el.max()) <= 45.5
    cos = (cams.forward_dirs() * -c / c.norm(dim=-1, keepdim=True)).sum(-1)
    assert float(cos.min()) > 0.9999  # everyone looks at the head centre
    jittered = studio_cameras(16, 64, seed=2)
    assert not torch.allclose(jittered.c2w, cams.c2w) and torch.equal(jittered.c2w, studio_cameras(16, 64, 2).c2w)
    out = render_head(sample_identity(SEED), np.zeros(52), cams[[0, 7, 15]])
    a = out["alpha"]
    assert float(a[:, :, :2].sum() + a[:, :, -2:].sum()) < 1.0  # nothing touches the left/right borders


def test_training_example(identity):
    g = torch.Generator().manual_seed(0)
    ex = sample_training_example(g, size=32, n_cameras=12, identity=identity)
    assert ex["input_rgb"].shape == (4, 32, 32, 3) and ex["target_rgb"].shape == (8, 32, 32, 3)
    assert ex["input_alpha"].shape == (4, 32, 32) and ex["input_depth"].shape == (4, 32, 32)
    assert ex["input_expr"].shape == (4, 52) and ex["target_expr"].shape == (52,)
    assert len(ex["input_cameras"]) == 4 and len(ex["target_cameras"]) == 8
    dirs = ex["input_cameras"].forward_dirs()
    cos = dirs @ dirs.T
    assert float(cos[~torch.eye(4, dtype=torch.bool)].max()) < 0.97  # inputs are well spread
    e = ex["input_expr"]
    assert all(not torch.equal(e[i], e[j]) for i in range(4) for j in range(i + 1, 4))


# ----- writers -------------------------------------------------------------------------------------------------
def test_synthetic_capture(tmp_path):
    from stages.capture import read_capture

    out = make_synthetic_capture(tmp_path / "cap", seed=2, size=32, n_targets=3)
    cap = read_capture(out)
    assert cap.images.shape == (4, 32, 32, 3) and cap.expression_space == "arkit52"
    assert cap.expressions.shape == (4, 52)
    assert len({tuple(e.tolist()) for e in cap.expressions}) == 4
    c = cap.cameras.centers()
    az = torch.rad2deg(torch.atan2(c[:, 0], c[:, 2]))
    assert float(az.max() - az.min()) > 60 and float(az.abs().max()) < 70
    assert float(cap.masks.mean()) > 0.1
    targets = json.loads((out / "targets" / "transforms.json").read_text())
    assert targets["expression_space"] == "arkit52" and len(targets["frames"]) == 3
    assert all(len(f["expression"]) == 52 and (out / "targets" / f["file_path"]).is_file()
               for f in targets["frames"])


def test_synth_cli_writes_the_dataset_layout(tmp_path):
    from avat3r_cli.app import app
    from stages.io import read_image

    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["synth", "--out", str(out), "--subjects", "3", "--timesteps", "2", "--cameras",
                                   "2", "--res", "24", "--seed", "4", "--workers", "1", "--device", "cpu",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["expression_space"] == "arkit52" and meta["cameras"] == 2 and meta["resolution"] == 24
    assert sorted(meta["subjects"]) == ["subject_000", "subject_001", "subject_002"]
    split = meta["split"]
    assert sorted(split["train"] + split["val"] + split["test"]) == meta["subjects"] and split["test"]
    tf = json.loads((out / "subject_001" / "transforms.json").read_text())
    assert len(tf["frames"]) == 4 and tf["expression_space"] == "arkit52"
    frame = tf["frames"][3]
    assert frame["file_path"] == "images/001_01.png" and len(frame["expression"]) == 52
    img = read_image(out / "subject_001" / frame["file_path"])
    assert img.shape == (24, 24, 4) and img[..., 3].max() > 0.9
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "x"), "--subjects", "0", "--quiet"])
    assert bad.exit_code == 2 and not (tmp_path / "x").exists()
