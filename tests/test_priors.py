"""Priors: the built-in multi-view prior on an analytic scene with exact depth, the priors file and its
staleness key, the DUSt3R alignment and backend (a tiny random model in the official checkpoint format), the
Sapiens feature backend (a traced module) and the `avat3r priors` command."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stages.capture import Capture, read_capture, write_capture
from stages.errors import BadInput
from stages.priors import (
    compute_priors,
    load_or_compute_priors,
    load_priors,
    priors_path,
    priors_settings_key,
    save_priors,
)
from stages.priors.align import Similarity, align_to_rays, initial_scale, umeyama
from stages.priors.builtin import builtin_priors
from stages.priors.consistency import consistent_views
from stages.priors.fill import push_pull
from stages.priors.geometry import opencv_c2w, scene_bounds
from stages.priors.hull import carve
from stages.priors.sweep import select
from stages.priors.testscene import scene_capture

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def scene96() -> tuple[Capture, torch.Tensor]:
    return scene_capture(4, 96, seed=3)


def _gt_points(cap: Capture, t: torch.Tensor) -> torch.Tensor:
    o, d = cap.cameras.rays()
    return o + t[..., None] * d


# ----- built-in prior ---------------------------------------------------------------------------------------

def test_builtin_recovers_the_surface(scene96):
    cap, t_gt = scene96
    pos, conf, info = builtin_priors(cap.images, cap.masks, cap.cameras)
    fg = cap.masks > 0.5
    assert pos.shape == (4, 96, 96, 3) and conf.shape == (4, 96, 96)
    assert bool((pos[~fg] == 0).all()) and bool((conf[~fg] == 0).all())
    assert bool((conf[fg] > 0).all()) and float(conf.max()) <= 1.0
    err = (pos - _gt_points(cap, t_gt)).norm(dim=-1)[fg] * 1000  # mm; the head is ~20 cm across
    hull_err = (info["t_hull"] - t_gt).abs()[fg] * 1000
    confident = (conf > 0.5)[fg]
    assert float(err.median()) < 4.0, float(err.median())
    assert float(err.median()) < float(hull_err.median())  # stereo improves on the hull
    assert 0.2 < float(confident.float().mean()) < 1.0
    # confidence means something: confident pixels are more accurate than the rest
    assert float(err[confident].median()) < float(err[~confident].median())
    assert float(err[confident].median()) < 2.5


def test_builtin_is_deterministic_and_scale_free(scene96):
    cap, _ = scene96
    a, ca, _ = builtin_priors(cap.images, cap.masks, cap.cameras)
    b, cb, _ = builtin_priors(cap.images, cap.masks, cap.cameras)
    assert torch.equal(a, b) and torch.equal(ca, cb)
    # the same scene in centimetres gives the same positions in centimetres
    cams = cap.cameras.transformed(100.0, torch.zeros(3))
    c, cc, _ = builtin_priors(cap.images, cap.masks, cams)
    fg = cap.masks > 0.5
    assert float((c[fg] / 100 - a[fg]).norm(dim=-1).median()) < 1e-3
    assert float((cc - ca).abs().mean()) < 0.05


def test_builtin_single_view_is_complete_but_unconfident(scene96):
    cap, _ = scene96
    pos, conf, _ = builtin_priors(cap.images[:1], cap.masks[:1], cap.cameras[0])
    fg = cap.masks[:1] > 0.5
    assert bool((pos[fg].norm(dim=-1) > 0).all()) and float(conf.max()) < 0.5


def test_hull_contains_the_surface(scene96):
    cap, t_gt = scene96
    centre, radius = scene_bounds(cap.cameras, cap.masks)
    assert float(centre.norm()) < 0.05 and 0.08 < radius < 0.5
    hull = carve(cap.cameras, cap.masks, centre, radius, samples=96, level=0.5)
    assert float(hull.valid[cap.masks > 0.5].float().mean()) > 0.99
    # the hull encloses the head: rays enter it no later than they hit the surface (up to sampling; grazing
    # rays at the silhouette, where half a pixel of mask is centimetres of depth, are left out)
    interior = -torch.nn.functional.max_pool2d(-cap.masks[:, None], 5, 1, 2)[:, 0] > 0.5
    fg = interior & hull.valid
    slack = 2 * radius / 96
    assert float((hull.t_in[fg] - t_gt[fg]).max()) < slack
    assert bool((hull.t_out[fg] >= hull.t_in[fg]).all())
    assert float((t_gt[fg] - hull.t_in[fg]).median()) < 0.01  # and it is reasonably tight (1 cm)


def test_select_refines_below_the_step():
    t = torch.linspace(0.9, 1.1, 21).view(1, 21, 1, 1).expand(1, 21, 2, 2).contiguous()
    true = torch.tensor([[[0.9537, 1.0], [1.0412, 1.0768]]])
    cost = 0.3 + 40.0 * (t - true[:, None]) ** 2
    est = select(cost, t)
    assert float((est.t - true).abs().max()) < 1e-3  # step is 0.01: the parabola gets 10x below it
    flat = select(torch.full_like(cost, 0.5), t)
    shallow = select(0.3 + 4.0 * (t - true[:, None]) ** 2, t)
    assert float(flat.margin.max()) == 0.0
    assert bool((est.margin > 5 * shallow.margin).all()) and float(shallow.margin.min()) > 0


def test_consistency_accepts_truth_and_rejects_noise(scene96):
    cap, t_gt = scene96
    fg = cap.masks > 0.5
    agree = consistent_views(cap.cameras, t_gt, fg)
    assert float((agree[fg] >= 1).float().mean()) > 0.6
    noisy = t_gt + 0.02 * torch.randn(t_gt.shape, generator=torch.Generator().manual_seed(0))
    bad = consistent_views(cap.cameras, noisy, fg)
    assert float((bad[fg] >= 1).float().mean()) < 0.25 * float((agree[fg] >= 1).float().mean())


def test_push_pull_fills_holes_and_keeps_known_values():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    values = (2.0 * x + y)[None, None]
    weights = torch.ones_like(values)
    weights[..., 10:20, 12:22] = 0.0
    out = push_pull(values * weights, weights)
    assert torch.equal(out[weights > 0], values[weights > 0])
    hole = weights == 0
    assert float((out[hole] - values[hole]).abs().max()) < 8.0  # smooth, within the neighbours' range
    assert float(out[hole].min()) >= float(values.min()) and float(out[hole].max()) <= float(values.max())


# ----- priors file and staleness ----------------------------------------------------------------------------

@pytest.fixture()
def capture_dir(tmp_path, scene96) -> Path:
    cap, _ = scene96
    return write_capture(tmp_path / "cap", cap.images, cap.masks, cap.cameras)


def test_priors_file_round_trip(tmp_path, scene96):
    cap, _ = scene96
    pri = compute_priors(cap, resolution=64)
    assert pri.pos.shape == (4, 64, 64, 3) and pri.feat is None
    assert pri.meta["backend"] == "builtin" and pri.meta["resolution"] == "64"
    save_priors(tmp_path / "p.safetensors", pri)
    back = load_priors(tmp_path / "p.safetensors")
    assert torch.equal(back.pos, pri.pos) and torch.equal(back.conf, pri.conf)
    assert back.key() == priors_settings_key(cap, resolution=64)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadInput, match="bad.safetensors"):
        load_priors(tmp_path / "bad.safetensors")


def test_stale_priors_are_recomputed(capture_dir):
    cap = read_capture(capture_dir)
    first = load_or_compute_priors(cap, resolution=48)
    assert priors_path(cap).is_file() and first.meta.get("info.reused") is None
    again = load_or_compute_priors(read_capture(capture_dir), resolution=48)
    assert again.meta.get("info.reused") == "true" and torch.equal(again.pos, first.pos)
    # another resolution, or changed pixels, make the file stale
    other = load_or_compute_priors(cap, resolution=32)
    assert other.meta.get("info.reused") is None and other.pos.shape[1] == 32
    cap2 = read_capture(capture_dir)
    cap2.images[0, 40:50, 40:50] = 1.0 - cap2.images[0, 40:50, 40:50]
    assert priors_settings_key(cap2, resolution=32) != priors_settings_key(cap, resolution=32)
    assert load_or_compute_priors(cap2, resolution=32).meta.get("info.reused") is None
    # a corrupt cache is recomputed too
    priors_path(cap).write_bytes(b"garbage")
    assert load_or_compute_priors(cap, resolution=32).meta.get("info.reused") is None


def test_an_unadoptable_priors_file_is_replaced_by_builtin(capture_dir):
    """backend=None adopts only backends that need no arguments; a DUSt3R file (needs its checkpoint) is not."""
    cap = read_capture(capture_dir)
    first = load_or_compute_priors(cap, resolution=48)
    assert load_or_compute_priors(cap, backend=None, resolution=48).meta.get("info.reused") == "true"
    first.meta["backend"] = "dust3r"
    save_priors(priors_path(cap), first)
    again = load_or_compute_priors(cap, backend=None, resolution=48)
    assert again.meta.get("info.reused") is None and again.meta["backend"] == "builtin"


def test_missing_or_wrong_checkpoints_are_bad_input(tmp_path, scene96):
    cap, _ = scene96
    with pytest.raises(BadInput, match="needs a checkpoint"):
        compute_priors(cap, backend="dust3r")
    with pytest.raises(BadInput, match="nothing.pth"):
        compute_priors(cap, backend="dust3r", checkpoint=tmp_path / "nothing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(BadInput, match="notes.pth"):
        compute_priors(cap, backend="dust3r", checkpoint=text, resolution=32)
    with pytest.raises(BadInput, match="notes.pth"):
        compute_priors(cap, features="sapiens", sapiens=text, resolution=32)
    with pytest.raises(BadInput, match="unknown priors backend"):
        compute_priors(cap, backend="colmap")


# ----- DUSt3R: alignment to known cameras -------------------------------------------------------------------

def _random_rotation(g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.linalg.det(q) > 0 else -q


def test_umeyama_recovers_a_similarity():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(2, 50, 3, generator=g)
    R = torch.stack([_random_rotation(g), _random_rotation(g)])
    sim = Similarity(torch.tensor([0.5, 3.0]), R, torch.randn(2, 3, generator=g))
    fit = umeyama(src, sim.apply(src), torch.ones(2, 50))
    assert torch.allclose(fit.scale, sim.scale, atol=1e-4) and torch.allclose(fit.R, R, atol=1e-4)
    assert torch.allclose(fit.t, sim.t, atol=1e-4)


def _pair_predictions(cap: Capture, t_gt: torch.Tensor, g: torch.Generator, noise: float = 0.0) -> dict:
    """What a perfect DUSt3R would say for every ordered pair, at a random scale per pair, plus noise."""
    from stages.priors.dust3r import _pairs

    world = _gt_points(cap, t_gt)
    w2c = torch.linalg.inv(opencv_c2w(cap.cameras))
    out = {"pts1": [], "pts2": [], "conf1": [], "conf2": []}
    pairs = _pairs(len(cap))
    for i, j in pairs:
        s = float(torch.empty(1).uniform_(0.2, 5.0, generator=g))
        for key, v in (("pts1", i), ("pts2", j)):
            cam = torch.einsum("ij,hwj->hwi", w2c[i, :3, :3], world[v]) + w2c[i, :3, 3]
            cam = cam + noise * torch.randn(cam.shape, generator=g)
            out[key].append(cam / s)
        out["conf1"].append(torch.full(t_gt.shape[1:], 5.0))
        out["conf2"].append(torch.full(t_gt.shape[1:], 5.0))
    res = {k: torch.stack(v) for k, v in out.items()}
    res["pairs"] = torch.tensor(pairs)
    return res


def test_pairs_align_to_known_cameras(scene96):
    from stages.priors.dust3r import fuse_pairs

    cap, t_gt = scene96
    preds = _pair_predictions(cap, t_gt, torch.Generator().manual_seed(0), noise=0.001)
    t, conf = fuse_pairs(preds, cap.cameras, cap.masks)
    fg = cap.masks > 0.5
    err = (t - t_gt).abs()[fg]
    assert float(err.median()) < 1e-3 and float(err.quantile(0.95)) < 3e-3  # metres
    assert float(conf[fg].min()) > 0.5 and bool((conf[~fg] == 0).all())


def test_ray_alignment_converges_from_a_rough_start(scene96):
    cap, t_gt = scene96
    o, d = cap.cameras.rays()
    world = _gt_points(cap, t_gt)
    fg = cap.masks > 0.5
    i, j = 0, 1
    pts_w = torch.cat([world[i][fg[i]], world[j][fg[j]]])[None]
    rays_o = torch.cat([o[i][fg[i]], o[j][fg[j]]])[None]
    rays_d = torch.cat([d[i][fg[i]], d[j][fg[j]]])[None]
    g = torch.Generator().manual_seed(5)
    truth = Similarity(torch.tensor([2.5]), _random_rotation(g)[None], torch.randn(1, 3, generator=g))
    # DUSt3R-frame points: the inverse of `truth` applied to world points
    local = torch.einsum("pji,pnj->pni", truth.R, pts_w - truth.t[:, None]) / truth.scale
    w = torch.ones(local.shape[:2])
    # start from a perturbed rotation and the closed-form scale, as fuse_pairs does
    tilt = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.05, 0.03], [0.05, 0.0, -0.04], [-0.03, 0.04, 0.0]]))
    R0 = truth.R @ tilt
    s0 = initial_scale(local, w, R0, truth.t, rays_o, rays_d)
    fit = align_to_rays(local, rays_o, rays_d, w, Similarity(s0, R0, truth.t.clone()), iterations=60)
    assert float((fit.apply(local) - pts_w).norm(dim=-1).median()) < 5e-4


def test_model_description_is_parsed_not_evaluated():
    from stages.priors.dust3r import parse_model_args

    text = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
            "img_size=(512, 512), head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
            "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
            "dec_embed_dim=768, dec_depth=12, dec_num_heads=12)")
    kw = parse_model_args(text)
    assert kw["img_size"] == (512, 512) and kw["depth_mode"] == ("exp", -math.inf, math.inf)
    assert kw["patch_embed_cls"] == "PatchEmbedDust3R" and kw["landscape_only"] is False
    for evil in ("AsymmetricCroCo3DStereo(x=__import__('os').system('true'))", "print('hi')",
                 "AsymmetricCroCo3DStereo(x=open('f'))"):
        with pytest.raises(ValueError):
            parse_model_args(evil)


# ----- DUSt3R: the whole path with a tiny random model ------------------------------------------------------

TINY = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
        "img_size=(64, 64), head_type='linear', output_mode='pts3d', depth_mode=('exp', -inf, inf), "
        "conf_mode=('exp', 1, inf), enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, "
        "dec_depth=2, dec_num_heads=2)")


@pytest.fixture(scope="module")
def tiny_dust3r(tmp_path_factory) -> Path:
    pytest.importorskip("mini_dust3r", reason="optional extra avat3r[dust3r] (mini-dust3r) not installed")
    from stages.priors.dust3r import _model_class, parse_model_args

    torch.manual_seed(0)
    model = _model_class()(**parse_model_args(TINY))
    path = tmp_path_factory.mktemp("dust3r") / "DUSt3R_tiny_64_linear.pth"
    torch.save({"args": argparse.Namespace(model=TINY), "model": model.state_dict(), "epoch": 0}, path)
    return path


def test_dust3r_backend_runs_end_to_end(tiny_dust3r, scene96):
    cap, _ = scene96
    pri = compute_priors(cap, backend="dust3r", checkpoint=tiny_dust3r, resolution=48)
    fg = cap.resized(48).masks > 0.5
    assert pri.pos.shape == (4, 48, 48, 3) and bool(torch.isfinite(pri.pos).all())
    assert float(pri.conf.min()) >= 0 and float(pri.conf.max()) <= 1 and bool((pri.conf[~fg] == 0).all())
    assert pri.meta["backend"] == "dust3r" and len(pri.meta["checkpoint.sha256"]) == 64
    # whatever the (random) network says, positions stay on the known rays of their pixels
    o, d = cap.resized(48).cameras.rays()
    known = pri.pos.norm(dim=-1) > 0
    assert float(known[fg].float().mean()) > 0.5
    rel = pri.pos - o
    off_ray = (rel - (rel * d).sum(-1, keepdim=True) * d).norm(dim=-1)
    assert float(off_ray[known].max()) < 1e-4
    again = compute_priors(cap, backend="dust3r", checkpoint=tiny_dust3r, resolution=48)
    assert torch.equal(again.pos, pri.pos)


def test_dust3r_refuses_other_pickles(tmp_path, tiny_dust3r, scene96):
    cap, _ = scene96
    wrong = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, wrong)
    with pytest.raises(BadInput, match="not an official DUSt3R checkpoint"):
        compute_priors(cap, backend="dust3r", checkpoint=wrong, resolution=32)
    evil = tmp_path / "evil.pth"
    torch.save({"args": argparse.Namespace(model=TINY), "model": {}, "hook": Path("x")}, evil)
    with pytest.raises(BadInput, match="evil.pth"):
        compute_priors(cap, backend="dust3r", checkpoint=evil, resolution=32)


# ----- Sapiens features -------------------------------------------------------------------------------------

class _PatchMean(torch.nn.Module):
    """Stands in for Sapiens: a 16x16-patch mean of the normalised input, returned as a 1-tuple."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.nn.functional.avg_pool2d(x, 16),)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_sapiens_features(tmp_path, scene96):
    from stages.priors.sapiens import MEAN, STD

    cap, _ = scene96
    path = tmp_path / "sapiens_tiny_torchscript.pt2"
    torch.jit.save(torch.jit.trace(_PatchMean(), torch.zeros(1, 3, 1024, 1024)), str(path))
    grey = Capture(cap.root, torch.full_like(cap.images, 0.5), cap.masks, cap.cameras)
    pri = compute_priors(grey, resolution=32, features="sapiens", sapiens=path)
    assert pri.feat.shape == (4, 64, 64, 3) and pri.meta["features"] == "sapiens"
    expect = (127.5 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(pri.feat[0, 10, 10], expect, atol=1e-4)


# ----- the command ------------------------------------------------------------------------------------------

def test_priors_command(capture_dir, tmp_path):
    from avat3r_cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["priors", str(capture_dir), "--resolution", "48", "--preview", "--device",
                              "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (capture_dir / "priors.safetensors").is_file() and (capture_dir / "priors_preview.png").is_file()
    assert "wrote" in res.output
    res = runner.invoke(app, ["priors", str(capture_dir), "--resolution", "48", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0 and "kept current" in res.output
    missing = tmp_path / "DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth"
    res = runner.invoke(app, ["priors", str(capture_dir), "--backend", "dust3r", "--checkpoint",
                              str(missing)])
    assert res.exit_code == 2 and "DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth" in res.output
    bogus = tmp_path / "sapiens.pt2"
    bogus.write_text("not torchscript")
    res = runner.invoke(app, ["priors", str(capture_dir), "--features", "sapiens", "--sapiens", str(bogus),
                              "--device", "cpu"])
    assert res.exit_code == 2 and "sapiens.pt2" in res.output and "Traceback" not in res.output


@pytest.mark.gpu
def test_builtin_on_cuda_matches_cpu(scene96):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cap, t_gt = scene96
    cpu, conf_cpu, _ = builtin_priors(cap.images, cap.masks, cap.cameras)
    gpu, conf_gpu, _ = builtin_priors(cap.images.cuda(), cap.masks.cuda(), cap.cameras.to("cuda"))
    fg = cap.masks > 0.5
    truth = _gt_points(cap, t_gt)
    err_cpu = (cpu - truth).norm(dim=-1)[fg].median()
    err_gpu = (gpu.cpu() - truth).norm(dim=-1)[fg].median()
    assert abs(float(err_gpu - err_cpu)) < 5e-4  # same algorithm: accuracy within half a millimetre
    assert abs(float((conf_gpu.cpu() > 0.5)[fg].float().mean() - (conf_cpu > 0.5)[fg].float().mean())) < 0.05
    again, _, _ = builtin_priors(cap.images.cuda(), cap.masks.cuda(), cap.cameras.to("cuda"))
    assert torch.equal(again, gpu)  # deterministic on the device too
