"""`avat3r render` and `avat3r export-ply` end to end on small scenes: outputs named after the frames with the
cameras' sizes, depth files, code pairing, and bad input (exit status 2, one sentence, nothing written)."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import stages.scene
from avat3r_cli.app import app
from stages.cameras import Cameras, frames_from_cameras, look_at, spherical_eye, write_transforms
from stages.errors import BadInput
from stages.gaussians import Gaussians, read_ply, save_gaussians, write_ply

runner = CliRunner()


def blob(n: int = 300, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(0.04 * torch.randn(n, 3, generator=gen), torch.randn(n, 4, generator=gen),
                     math.log(0.01) + 0.3 * torch.randn(n, 3, generator=gen),
                     2 + torch.randn(n, generator=gen), torch.rand(n, 3, generator=gen))


def cameras(n: int, width: int, height: int) -> Cameras:
    eye = spherical_eye(torch.linspace(-30, 30, n), torch.zeros(n), 0.7)
    f = torch.full((n,), 60.0)
    cx, cy = torch.full((n,), width / 2), torch.full((n,), height / 2)
    return Cameras(look_at(eye), f, f, cx, cy, width, height)


def cameras_file(path: Path, n: int = 3, width: int = 40, height: int = 28,
                 names: list[str] | None = None) -> Path:
    names = names or [f"images/cam_{i:02d}.jpg" for i in range(n)]
    write_transforms(path, frames_from_cameras(cameras(n, width, height), names))
    return path


@pytest.fixture
def scene_files(tmp_path: Path) -> dict[str, Path]:
    g = blob()
    save_gaussians(tmp_path / "blob.safetensors", g)
    write_ply(tmp_path / "blob.ply", g)
    return {"st": tmp_path / "blob.safetensors", "ply": tmp_path / "blob.ply",
            "cams": cameras_file(tmp_path / "transforms.json")}


def invoke(*args: str):
    return runner.invoke(app, [*map(str, args), "--quiet", "--device", "cpu"])


def assert_fails(res, needle: str, out: Path) -> None:
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists(), "a failed run must not leave output"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temporary left behind"


# ----- render ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["st", "ply"])
def test_render_writes_rgba_named_after_frames(scene_files: dict[str, Path], tmp_path: Path, kind: str):
    out = tmp_path / "renders"
    res = invoke("render", scene_files[kind], "--cameras", scene_files["cams"], "--out", out, "--depth",
                 "--background", "white")
    assert res.exit_code == 0, res.output
    assert "wrote 3 RGBA image(s) + depth" in res.output
    assert sorted(p.name for p in out.glob("*.png")) == ["cam_00.png", "cam_01.png", "cam_02.png"]
    img = iio.imread(out / "cam_01.png")
    assert img.shape == (28, 40, 4) and img.dtype == np.uint8
    alpha = img[..., 3]
    assert alpha.max() == 255 and alpha.min() == 0, "the blob covers part of the image"
    corners = img[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners[:, :3] == 255).all() and (corners[:, 3] == 0).all(), "empty pixels show the background"
    mm = iio.imread(out / "depth" / "cam_01.png")
    z = np.load(out / "depth" / "cam_01.npy")
    assert mm.dtype == np.uint16 and z.dtype == np.float32 and mm.shape == z.shape == (28, 40)
    covered = alpha > 128
    assert np.all(np.abs(z[covered] - 0.7) < 0.15), "surface about 0.7 m from the camera"
    np.testing.assert_array_equal(mm, np.round(z * 1000).astype(np.uint16))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".renders")]


def test_render_keeps_other_files_in_an_existing_folder(scene_files: dict[str, Path], tmp_path: Path):
    out = tmp_path / "renders"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = invoke("render", scene_files["st"], "--cameras", scene_files["cams"], "--out", out)
    assert res.exit_code == 0, res.output
    assert (out / "notes.txt").read_text() == "mine" and (out / "cam_02.png").is_file()
    assert not (out / "depth").exists()


def test_render_bad_input(scene_files: dict[str, Path], tmp_path: Path):
    out = tmp_path / "out"
    cams = scene_files["cams"]
    assert_fails(invoke("render", tmp_path / "missing.ply", "--cameras", cams, "--out", out),
                 "scene file not found", out)
    assert_fails(invoke("render", scene_files["st"], "--cameras", tmp_path / "none.json", "--out", out),
                 "cameras file not found", out)
    np.save(tmp_path / "codes.npy", np.zeros((3, 52), np.float32))
    assert_fails(invoke("render", scene_files["ply"], "--cameras", cams, "--out", out, "--exp",
                        tmp_path / "codes.npy"), "static Gaussian set", out)
    assert_fails(invoke("render", scene_files["st"], "--cameras", cams, "--out", out, "--background",
                        "mauve"), "--background", out)
    dup = cameras_file(tmp_path / "dup.json", names=["a/x.png", "b/x.png", "c/y.png"])
    assert_fails(invoke("render", scene_files["st"], "--cameras", dup, "--out", out),
                 "both be written as x.png", out)
    g = blob(20)
    g.means[3, 1] = float("nan")
    save_gaussians(tmp_path / "nan.safetensors", g)
    assert_fails(invoke("render", tmp_path / "nan.safetensors", "--cameras", cams, "--out", out),
                 "contains NaN", out)
    (tmp_path / "scene.obj").write_text("v 0 0 0\n")
    assert_fails(invoke("render", tmp_path / "scene.obj", "--cameras", cams, "--out", out),
                 "unknown scene type", out)


class CodeScene:
    """A stand-in for an avatar: one large Gaussian whose colour is the first three code values."""

    expression_dim = 4

    def __init__(self, path: Path, fail_on_call: int | None = None):
        self.path, self.calls, self.fail_on_call = path, 0, fail_on_call

    def gaussians(self, code: np.ndarray | None = None) -> Gaussians:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise BadInput("decoder blew up on this code", self.path)
        rgb = torch.tensor(np.zeros(3) if code is None else code[:3], dtype=torch.float32)[None]
        return Gaussians(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), math.log(0.2)),
                         torch.tensor([8.0]), rgb)


@pytest.fixture
def code_scene(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    holder = {}

    def fake_open(path, device="cpu", checkpoint=None):
        holder["scene"] = CodeScene(Path(path), holder.get("fail_on_call"))
        return holder["scene"]

    monkeypatch.setattr(stages.scene, "open_scene", fake_open)
    (tmp_path / "avatar.safetensors").write_bytes(b"stand-in")
    return holder


def centre_colour(path: Path) -> np.ndarray:
    img = iio.imread(path)
    return img[img.shape[0] // 2, img.shape[1] // 2, :3]


def test_render_pairs_codes_with_frames(code_scene: dict, tmp_path: Path):
    cams = cameras_file(tmp_path / "t.json")
    avatar = tmp_path / "avatar.safetensors"
    np.save(tmp_path / "per_frame.npy", np.eye(3, 4, dtype=np.float32))  # frame i -> pure colour channel i
    res = invoke("render", avatar, "--cameras", cams, "--out", tmp_path / "a", "--exp",
                 tmp_path / "per_frame.npy")
    assert res.exit_code == 0, res.output
    for i in range(3):
        assert int(np.argmax(centre_colour(tmp_path / "a" / f"cam_{i:02d}.png"))) == i
    np.save(tmp_path / "one.npy", np.array([0.0, 1.0, 0.0, 0.5], np.float32))  # (D,) = one code for all
    res = invoke("render", avatar, "--cameras", cams, "--out", tmp_path / "b", "--exp", tmp_path / "one.npy")
    assert res.exit_code == 0, res.output
    assert all(int(np.argmax(centre_colour(p))) == 1 for p in (tmp_path / "b").glob("*.png"))
    np.save(tmp_path / "two.npy", np.zeros((2, 4), np.float32))
    out = tmp_path / "c"
    assert_fails(invoke("render", avatar, "--cameras", cams, "--out", out, "--exp", tmp_path / "two.npy"),
                 "has 2 codes for 3 camera frames", out)
    np.save(tmp_path / "wide.npy", np.zeros((3, 5), np.float32))
    assert_fails(invoke("render", avatar, "--cameras", cams, "--out", out, "--exp", tmp_path / "wide.npy"),
                 "width 5", out)


def test_failure_mid_run_leaves_no_output(code_scene: dict, tmp_path: Path):
    code_scene["fail_on_call"] = 3
    out = tmp_path / "renders"
    res = invoke("render", tmp_path / "avatar.safetensors", "--cameras", cameras_file(tmp_path / "t.json"),
                 "--out", out)
    assert_fails(res, "decoder blew up", out)
    assert code_scene["scene"].calls == 3


# ----- export-ply -----------------------------------------------------------------------------------------
def test_export_ply_and_splat(scene_files: dict[str, Path], tmp_path: Path):
    res = invoke("export-ply", scene_files["st"], "--out", tmp_path / "x.ply")
    assert res.exit_code == 0, res.output
    assert "wrote 300 Gaussians" in res.output
    back = read_ply(tmp_path / "x.ply")
    torch.testing.assert_close(back.means, blob().means)
    res = invoke("export-ply", scene_files["ply"], "--out", tmp_path / "x.splat")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x.splat").stat().st_size == 32 * 300


def test_export_ply_picks_a_frame(code_scene: dict, tmp_path: Path):
    np.save(tmp_path / "codes.npy", np.array([[0.1, 0.2, 0.3, 0], [0.9, 0.8, 0.7, 0]], np.float32))
    args = ["export-ply", tmp_path / "avatar.safetensors", "--exp", tmp_path / "codes.npy"]
    res = invoke(*args, "--frame", "1", "--out", tmp_path / "f1.ply")
    assert res.exit_code == 0, res.output
    torch.testing.assert_close(read_ply(tmp_path / "f1.ply").colors, torch.tensor([[0.9, 0.8, 0.7]]))
    out = tmp_path / "f5.ply"
    assert_fails(invoke(*args, "--frame", "5", "--out", out), "--frame 5 is out of range", out)


def test_export_ply_bad_input(scene_files: dict[str, Path], tmp_path: Path):
    out = tmp_path / "x.obj"
    assert_fails(invoke("export-ply", scene_files["st"], "--out", out), "unknown output type", out)
    out = tmp_path / "y.ply"
    assert_fails(invoke("export-ply", tmp_path / "nope.safetensors", "--out", out), "scene file not found",
                 out)
    assert_fails(invoke("export-ply", scene_files["st"], "--out", out, "--frame", "2"), "--frame picks", out)
    np.save(tmp_path / "c.npy", np.zeros(52, np.float32))
    assert_fails(invoke("export-ply", scene_files["ply"], "--out", out, "--exp", tmp_path / "c.npy"),
                 "static Gaussian set", out)


def _targets_file(path: Path, codes: list | None) -> Path:
    extras = [{} if c is None else {"expression": c} for c in codes]
    write_transforms(path, frames_from_cameras(cameras(len(codes), 40, 28),
                                               [f"images/{i:03d}.png" for i in range(len(codes))], extras))
    return path


def test_render_uses_the_expressions_a_targets_file_records(code_scene: dict, tmp_path: Path):
    """Synthetic targets record each frame's expression (spec section 2): without --exp those are rendered."""
    avatar = tmp_path / "avatar.safetensors"
    cams = _targets_file(tmp_path / "t.json", np.eye(3, 4).tolist())
    res = invoke("render", avatar, "--cameras", cams, "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    for i in range(3):
        assert int(np.argmax(centre_colour(tmp_path / "a" / f"{i:03d}.png"))) == i
    np.save(tmp_path / "one.npy", np.array([0.0, 0.0, 1.0, 0.0], np.float32))  # --exp still wins
    res = invoke("render", avatar, "--cameras", cams, "--out", tmp_path / "b", "--exp", tmp_path / "one.npy")
    assert res.exit_code == 0, res.output
    assert all(int(np.argmax(centre_colour(p))) == 2 for p in (tmp_path / "b").glob("*.png"))
    out = tmp_path / "c"
    mixed = _targets_file(tmp_path / "mixed.json", [[1.0, 0, 0, 0], None, [0, 1.0, 0, 0]])
    assert_fails(invoke("render", avatar, "--cameras", mixed, "--out", out), "record no expression", out)
    wide = _targets_file(tmp_path / "wide.json", [[1.0, 0, 0, 0, 0]] * 3)
    assert_fails(invoke("render", avatar, "--cameras", wide, "--out", out), "expression space has 4", out)
