"""The avatar commands end to end on CPU with a tiny random checkpoint: reconstruct → animate / render /
export-ply, plus the bad inputs they must refuse with exit status 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from avat3r_cli.app import app
from stages.avatar import load_avatar, open_avatar
from stages.cameras import dome, frames_from_cameras, write_transforms
from stages.capture import write_capture
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import load_model, save_checkpoint

runner = CliRunner()


def _sphere_capture(root: Path, size: int = 64) -> Path:
    """A textured sphere seen by 4 cameras: enough for priors and the network to run."""
    cams = dome(4, size=size, azimuth_span_deg=120, elevation_range_deg=(-10, 20), focal=size / 0.34)
    o, d = cams.rays()
    # ray/sphere (radius 0.1 at the origin)
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - 0.1**2
    disc = b * b - c
    hit = disc > 0
    t = -b - disc.clamp(min=0).sqrt()
    p = o + d * t[..., None]
    tex = 0.5 + 0.5 * torch.sin(40 * p[..., :1]) * torch.cos(30 * p[..., 1:2])
    rgb = torch.cat([tex, 0.6 * torch.ones_like(tex), 1 - tex], -1) * hit[..., None]
    write_capture(root, rgb.numpy(), hit.float().numpy(), cams, np.zeros((4, 52), np.float32), "arkit52")
    return root


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny"))
    with torch.no_grad():  # a non-trivial expression path
        for p in model.head.parameters():
            p.normal_(0, 0.05)
    ckpt = save_checkpoint(tmp / "tiny.safetensors", model)
    cap = _sphere_capture(tmp / "capture")
    return tmp, ckpt, cap


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_reconstruct_animate_render_export(chain):
    tmp, ckpt, cap = chain
    avatar = tmp / "avatar.safetensors"
    _ok(runner.invoke(app, ["reconstruct", str(cap), "--out", str(avatar), "--checkpoint", str(ckpt), "--device",
                            "cpu", "--quiet", "--refine", "0"]))  # the network's own avatar, compared below
    assert avatar.is_file() and (cap / "priors.safetensors").is_file()
    av = load_avatar(avatar)
    assert av.meta["expression_space"] == "arkit52" and av.images.shape == (4, 64, 64, 3)
    codes = np.zeros((3, 52), np.float32)
    codes[1, 17] = 1.0
    np.save(tmp / "codes.npy", codes)
    video = tmp / "video.mp4"
    _ok(runner.invoke(app, ["animate", str(avatar), "--exp", str(tmp / "codes.npy"), "--out", str(video),
                            "--size", "64", "--compile", "--frames-dir", str(tmp / "frames"), "--device", "cpu",
                            "--quiet"]))  # --compile: a GPU option, accepted and harmless on a CPU
    assert video.stat().st_size > 1000
    frames = sorted((tmp / "frames").glob("*.png"))
    assert len(frames) == 3
    cams = dome(2, size=48)
    write_transforms(tmp / "cams.json", frames_from_cameras(cams, ["a.png", "b.png"]))
    np.save(tmp / "two.npy", codes[:2])
    _ok(runner.invoke(app, ["render", str(avatar), "--cameras", str(tmp / "cams.json"), "--out", str(tmp / "r"),
                            "--exp", str(tmp / "two.npy"), "--device", "cpu", "--quiet"]))
    assert sorted(p.name for p in (tmp / "r").glob("*.png")) == ["a.png", "b.png"]
    ply = tmp / "a.ply"
    _ok(runner.invoke(app, ["export-ply", str(avatar), "--out", str(ply), "--exp", str(tmp / "codes.npy"),
                            "--frame", "1", "--device", "cpu", "--quiet"]))
    from stages.gaussians import read_ply

    g = read_ply(ply)
    # Not the driver's call (its kept-pixel fast path) but the plain network on the avatar's stored inputs.
    model, _ = load_model(ckpt)
    with torch.no_grad():
        maps = model.eval()(av.images[None], av.pos[None], av.conf[None], av.masks[None], av.cameras,
                            torch.from_numpy(codes[1:2]))
    expected = maps.gaussians(0)
    assert len(g) == len(expected) == int(maps.keep.sum()) > 0
    torch.testing.assert_close(g.means, expected.means, atol=1e-5, rtol=0)


def test_photo_detail_brings_the_input_photo_back_at_its_own_camera(chain):
    """At an input camera the nearest photo is that input itself: with --photo-detail the render moves toward
    it (where the two agree), the alpha channel stays the avatar's; a static Gaussian set is refused."""
    import imageio.v3 as iio

    tmp, ckpt, cap = chain
    avatar = tmp / "avatar_pd.safetensors"
    _ok(runner.invoke(app, ["reconstruct", str(cap), "--out", str(avatar), "--checkpoint", str(ckpt), "--device",
                            "cpu", "--quiet", "--refine", "0"]))  # refinement: tests/test_refine.py
    av = load_avatar(avatar)
    write_transforms(tmp / "own.json", frames_from_cameras(av.cameras, [f"v{i}.png" for i in range(4)]))
    for flag, out in (([], "plain"), (["--photo-detail"], "photo")):
        _ok(runner.invoke(app, ["render", str(avatar), "--cameras", str(tmp / "own.json"), "--out", str(tmp / out),
                                "--background", "black", "--device", "cpu", "--quiet", *flag]))
    err = {"plain": 0.0, "photo": 0.0}
    for i in range(4):
        plain, photo = (iio.imread(tmp / k / f"v{i}.png") / 255.0 for k in ("plain", "photo"))
        assert np.array_equal(plain[..., 3], photo[..., 3])
        a = plain[..., 3:]
        inside = (a[..., 0] > 0.5) & (av.masks[i].numpy() > 0.5)
        target = av.images[i].numpy() * a  # the photo as the render composites it (over black)
        for k, img in (("plain", plain), ("photo", photo)):
            err[k] += float(((img[..., :3] - target) ** 2)[inside].mean())
    assert err["photo"] < 0.8 * err["plain"], err
    video = tmp / "pd.mp4"
    np.save(tmp / "pd_codes.npy", np.zeros((2, 52), np.float32))
    _ok(runner.invoke(app, ["animate", str(avatar), "--exp", str(tmp / "pd_codes.npy"), "--out", str(video),
                            "--size", "48", "--photo-detail", "--device", "cpu", "--quiet"]))
    assert video.stat().st_size > 1000
    ply = tmp / "pd.ply"
    _ok(runner.invoke(app, ["export-ply", str(avatar), "--out", str(ply), "--device", "cpu", "--quiet"]))
    r = runner.invoke(app, ["render", str(ply), "--cameras", str(tmp / "own.json"), "--out", str(tmp / "x"),
                            "--photo-detail", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2 and "--photo-detail needs an avatar" in r.output and not (tmp / "x").exists()


def test_avatar_replays_exactly_and_expression_moves_gaussians(chain):
    tmp, ckpt, cap = chain
    avatar = tmp / "avatar2.safetensors"
    _ok(runner.invoke(app, ["reconstruct", str(cap), "--out", str(avatar), "--checkpoint", str(ckpt), "--quiet",
                            "--device", "cpu"]))
    d = open_avatar(avatar, device="cpu")
    neutral, jaw = np.zeros(52, np.float32), np.zeros(52, np.float32)
    jaw[17] = 1.0
    a, b = d.gaussians(neutral), d.gaussians(neutral)
    assert torch.equal(a.means, b.means)
    assert (d.gaussians(jaw).means - a.means).abs().max() > 0


def test_bad_inputs_exit_2(chain):
    tmp, ckpt, cap = chain
    avatar = tmp / "avatar.safetensors"
    if not avatar.exists():
        _ok(runner.invoke(app, ["reconstruct", str(cap), "--out", str(avatar), "--checkpoint", str(ckpt),
                                "--quiet", "--device", "cpu"]))
    np.save(tmp / "wide.npy", np.zeros((2, 51), np.float32))
    r = runner.invoke(app, ["animate", str(avatar), "--exp", str(tmp / "wide.npy"), "--out", str(tmp / "x.mp4")])
    assert r.exit_code == 2 and "width 51" in r.output and not (tmp / "x.mp4").exists()
    nan = np.zeros((2, 52), np.float32)
    nan[0, 3] = np.nan
    np.save(tmp / "nan.npy", nan)
    r = runner.invoke(app, ["animate", str(avatar), "--exp", str(tmp / "nan.npy"), "--out", str(tmp / "y.mp4")])
    assert r.exit_code == 2 and "NaN" in r.output
    r = runner.invoke(app, ["reconstruct", str(tmp / "nope"), "--out", str(tmp / "z.safetensors"),
                            "--checkpoint", str(ckpt)])
    assert r.exit_code == 2 and "not found" in r.output and not (tmp / "z.safetensors").exists()
    (tmp / "junk.safetensors").write_bytes(b"not a checkpoint")
    r = runner.invoke(app, ["reconstruct", str(cap), "--out", str(tmp / "z.safetensors"), "--checkpoint",
                            str(tmp / "junk.safetensors")])
    assert r.exit_code == 2 and "junk.safetensors" in r.output
    other = Avat3rNet(preset("tiny"))
    save_checkpoint(tmp / "other.safetensors", other)
    r = runner.invoke(app, ["animate", str(avatar), "--exp", str(tmp / "codes.npy"), "--out", str(tmp / "w.mp4"),
                            "--checkpoint", str(tmp / "other.safetensors")])
    assert r.exit_code == 2 and "sha256" in r.output
    meta = load_avatar(avatar).meta  # names the checkpoint it needs by its bytes' hash, and its shape
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert (meta["format"], meta["expression_space"], meta["expression_dim"], meta["views"],
            meta["image_size"]) == ("avat3r-avatar", "arkit52", "52", "4", "64")


def test_evaluate_scores_model_and_baselines(tmp_path, chain):
    _, ckpt, _ = chain
    out = tmp_path / "report"
    r = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--subjects", "1", "--out", str(out),
                            "--no-lpips", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "metrics.json").read_text())
    # the seed protocol (the scores themselves are recomputed from the images in test_evaluate.py)
    assert report["protocol"]["seeds"] == [100000] and report["protocol"]["targets_per_subject"] == 8
    assert [r["targets"] for r in report["subjects"]] == [8]
    table = (out / "metrics.md").read_text()
    for method in ("avat3r", "nearest view", "prior points"):
        m = report["mean"][method]
        assert f"| **mean** | {method} | {m['psnr']:.2f} | {m['ssim']:.3f} |" in table
    # the untrained-but-perturbed network is not the prior baseline, and neither is a copied input view
    assert len({report["mean"][k]["psnr"] for k in ("avat3r", "nearest view", "prior points")}) == 3
    assert (out / "grid.png").is_file()


@pytest.mark.parametrize("command", ["render", "animate"])
def test_photo_detail_help_names_the_threshold_in_use(command):
    """The help is written before the CLI imports stages.cameras, so it spells the threshold out: it must say
    MIN_TURN_DEG's value."""
    import re

    from stages.cameras import MIN_TURN_DEG

    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.output).split())
    assert r.exit_code == 0 and f"inputs turn less than {MIN_TURN_DEG:g} degrees" in text


def test_photo_detail_is_on_by_default_only_for_inputs_that_hardly_turn(chain):
    """Unset, photo detail follows the inputs' spread: a studio capture renders as with --no-photo-detail, the
    same avatar with its cameras turned to within a few degrees of each other as with --photo-detail."""
    import imageio.v3 as iio

    from stages.avatar import save_avatar
    from stages.cameras import MIN_TURN_DEG, Cameras, look_at, spherical_eye, viewing_spread_deg
    from stages.render.photo_detail import photo_detail_wanted

    tmp, ckpt, cap = chain
    wide = tmp / "avatar_auto.safetensors"
    _ok(runner.invoke(app, ["reconstruct", str(cap), "--out", str(wide), "--checkpoint", str(ckpt), "--device",
                            "cpu", "--quiet", "--refine", "0"]))  # refinement: tests/test_refine.py
    av = load_avatar(wide)
    assert viewing_spread_deg(av.cameras.c2w) > MIN_TURN_DEG and not photo_detail_wanted(None, av.cameras)
    c = av.cameras
    eyes = spherical_eye(torch.tensor([-3.0, 0.0, 2.0, 4.0]), torch.tensor([1.0, -2.0, 0.0, 3.0]),
                         float(c.c2w[0, :3, 3].norm()))
    av.cameras = Cameras(look_at(eyes), c.fx, c.fy, c.cx, c.cy, c.width, c.height)
    assert 5.0 < viewing_spread_deg(av.cameras.c2w) < MIN_TURN_DEG and photo_detail_wanted(None, av.cameras)
    assert not photo_detail_wanted(False, av.cameras) and photo_detail_wanted(True, c)
    narrow = tmp / "avatar_narrow.safetensors"
    save_avatar(narrow, av)
    write_transforms(tmp / "near.json", frames_from_cameras(av.cameras[:2], ["a.png", "b.png"]))
    for avatar, flags, out in ((wide, [], "w_auto"), (wide, ["--no-photo-detail"], "w_off"),
                               (narrow, [], "n_auto"), (narrow, ["--photo-detail"], "n_on"),
                               (narrow, ["--no-photo-detail"], "n_off")):
        _ok(runner.invoke(app, ["render", str(avatar), "--cameras", str(tmp / "near.json"), "--out",
                                str(tmp / out), "--checkpoint", str(ckpt), "--device", "cpu", "--quiet", *flags]))
    for name in ("a.png", "b.png"):
        img = {k: iio.imread(tmp / k / name) for k in ("w_auto", "w_off", "n_auto", "n_on", "n_off")}
        assert np.array_equal(img["w_auto"], img["w_off"])
        assert np.array_equal(img["n_auto"], img["n_on"]) and not np.array_equal(img["n_auto"], img["n_off"])
