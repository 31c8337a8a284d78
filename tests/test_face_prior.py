"""The face-mesh prior: the canonical mesh read from the landmarker model, the triangle rasteriser, the mesh
placed in the world on synthetic heads (checked against their rendered depth), the `facemesh` backend with its
fallbacks, and its priors-file key."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stages.cameras import look_at, make_cameras, spherical_eye
from stages.capture import write_capture
from stages.priors import priors_settings_key
from stages.priors.builtin import builtin_priors
from stages.priors.raster import rasterize_depth
from stages.priors.testscene import scene_capture
from stages.track.canonical_face import parse_canonical_mesh

torch.set_num_threads(min(2, torch.get_num_threads()))


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def test_canonical_mesh_wire_format_packed_and_unpacked():
    verts = np.arange(468 * 5, dtype=np.float32)
    tris = [0, 1, 2, 2, 1, 467]
    packed_f = b"\x1a" + _varint(4 * verts.size) + verts.tobytes()  # field 3, length-delimited
    packed_i = b"\x22" + _varint(len(b"".join(_varint(i) for i in tris))) + b"".join(_varint(i) for i in tris)
    unpacked_f = b"".join(b"\x1d" + struct.pack("<f", v) for v in verts)  # field 3, fixed32 each
    unpacked_i = b"".join(b"\x20" + _varint(i) for i in tris)  # field 4, varint each
    for mesh in (b"\x08\x00" + packed_f + packed_i, unpacked_f + unpacked_i):
        msg = b"\x0a" + _varint(len(mesh)) + mesh + b"\x1a\x02\x08\x01"  # canonical_mesh + another field
        face = parse_canonical_mesh(msg)
        assert face.vertices.shape == (468, 3) and face.vertices[1].tolist() == [5.0, 6.0, 7.0]
        assert face.triangles.tolist() == [[0, 1, 2], [2, 1, 467]]
    with pytest.raises(ValueError):
        parse_canonical_mesh(b"\x0a" + _varint(len(unpacked_i)) + unpacked_i)


def test_rasteriser_gives_exact_plane_depth_and_the_nearest_surface():
    size, focal = 64, 80.0
    cams = make_cameras(look_at(spherical_eye(torch.tensor([0.0, 20.0]), torch.tensor([0.0, 5.0]), 1.0)), focal,
                        size)
    # a square 0.2 m wide in the plane z = 0.05 facing the cameras, and a smaller one 5 cm behind it
    sq = torch.tensor([[-0.1, -0.1, 0.05], [0.1, -0.1, 0.05], [0.1, 0.1, 0.05], [-0.1, 0.1, 0.05]])
    back = sq * torch.tensor([0.5, 0.5, 1.0]) - torch.tensor([0.0, 0.0, 0.05])
    verts = torch.cat([sq, back])[None].expand(2, -1, -1)
    tris = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    t, hit = rasterize_depth(cams, verts, tris)
    o, d = cams.rays()
    t_plane = (0.05 - o[..., 2]) / d[..., 2]
    p = o + t_plane[..., None] * d
    inside = (p[..., 0].abs() < 0.1) & (p[..., 1].abs() < 0.1)
    edge = ((p[..., 0].abs() - 0.1).abs() < 2e-3) | ((p[..., 1].abs() - 0.1).abs() < 2e-3)
    assert torch.equal(hit[~edge], inside[~edge])
    assert (t - t_plane)[hit].abs().max() < 1e-5  # the front square hides the one behind it
    assert hit.sum() > 0.5 * (0.2 * focal) ** 2 * 2


def test_parallax_is_the_widest_angle_between_cameras_at_the_face():
    from stages.priors.face_prior import parallax_deg

    size = 32
    cams = make_cameras(look_at(spherical_eye(torch.tensor([-30.0, 0.0, 3.0]), torch.zeros(3), 1.0)), 100.0, size)
    o, d = cams.rays()
    t = -(o * d).sum(-1)  # the point of each ray nearest the origin: a face at the origin
    got = parallax_deg(cams, t, torch.ones(3, size, size, dtype=torch.bool))
    assert torch.allclose(got, torch.tensor([33.0, 30.0, 33.0]), atol=1.0)  # 3 and 30 degrees apart


@pytest.fixture(scope="module")
def head():
    """Three renders of a synthetic head (views within +-25 degrees), its cameras and true ray distances."""
    pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")
    from stages.synth.identity import sample_identity
    from stages.synth.render import render_head
    from stages.synth.studio import capture_cameras

    size = 128
    cams = capture_cameras(3, size, torch.Generator().manual_seed(1), spread_deg=25.0)
    idn = sample_identity(np.random.default_rng(1))
    code = np.zeros(52, np.float32)
    outs = [render_head(idn, code, cams[v]) for v in range(3)]
    rgb = torch.cat([o["rgb"] for o in outs])
    alpha = torch.cat([o["alpha"] for o in outs])
    z = torch.cat([o["depth"] for o in outs])
    _, d = cams.rays()
    t = z / (d * cams.forward_dirs()[:, None, None, :]).sum(-1)
    return rgb, alpha, cams, t


def test_face_mesh_lies_on_the_synthetic_face(head):
    from stages.priors.facemesh import face_mesh

    rgb, alpha, cams, t_gt = head
    mesh = face_mesh(rgb, cams)
    assert mesh is not None and all(mesh.detected) and mesh.residual_px < 3.0  # measured 1.1 px
    t, hit = rasterize_depth(cams, mesh.vertices.float(), mesh.triangles)
    both = hit & (alpha > 0.5) & (t_gt > 0)
    assert both.float().sum() > 0.2 * (alpha > 0.5).float().sum()  # the face, not a speck
    err = (t - t_gt)[both].abs()
    # measured 4 mm; a mesh 1 cm off along the rays, or placed at the canonical size, is several times worse
    assert float(err.median()) < 0.008
    assert float((t - t_gt)[both].median().abs()) < 0.005  # no systematic offset in depth


def test_facemesh_backend_trusts_more_of_the_head(head):
    from stages.priors.face_prior import face_mesh_priors

    rgb, alpha, cams, t_gt = head
    pos, conf, info, note = face_mesh_priors(rgb, alpha, cams)
    assert "detected in 3 of 3 views" in note and bool(info["mesh"].any())
    base_pos, base_conf, _ = builtin_priors(rgb, alpha, cams)
    fg = (alpha > 0.5) & (t_gt > 0)
    o, d = cams.rays()
    truth = o + t_gt[..., None] * d
    sure, base_sure = (conf > 0.5) & fg, (base_conf > 0.5) & fg
    assert sure.float().sum() > base_sure.float().sum() + 0.15 * fg.float().sum()
    assert float((pos - truth).norm(dim=-1)[sure].median()) < 0.005  # confident pixels stay accurate (4.1 mm at 128²)


def test_views_that_hardly_turn_take_the_mesh_on_the_face(head):
    from stages.priors.face_prior import FaceMeshSettings, face_mesh_priors

    rgb, alpha, cams, t_gt = head
    # a parallax limit of 90 degrees makes every view one whose stereo cannot place the face
    pos, conf, info, _ = face_mesh_priors(rgb, alpha, cams, FaceMeshSettings(min_parallax=90.0))
    on = info["mesh"]
    assert bool(on.any()) and bool((conf[on] == 0.6).all()) and not bool(info["verified"][on].any())
    assert float((info["t"] - t_gt)[on & (t_gt > 0)].abs().median()) < 0.008  # the mesh's own accuracy


def test_facemesh_falls_back_without_a_face_or_a_landmarker(monkeypatch):
    import stages.priors.face_prior as face_prior

    cap, _ = scene_capture(4, 48, seed=2)
    base_pos, base_conf, base = builtin_priors(cap.images, cap.masks, cap.cameras)
    monkeypatch.setattr(face_prior, "landmarker_status", lambda model=None: (None, "mediapipe is not installed"))
    pos, conf, info, note = face_prior.face_mesh_priors(cap.images, cap.masks, cap.cameras)
    assert "skipped (mediapipe is not installed)" in note and not bool(info["mesh"].any())
    assert torch.equal(pos, base_pos)  # the same geometry as the built-in prior
    assert torch.equal(conf[base["verified"]], base_conf[base["verified"]])
    assert (conf > 0.5).sum() >= (base_conf > 0.5).sum()


def test_facemesh_without_a_face_keeps_the_builtin_geometry():
    pytest.importorskip("mediapipe", reason="needs avat3r[track] (make setup installs it)")
    from stages.priors.face_prior import face_mesh_priors

    cap, _ = scene_capture(4, 48, seed=2)  # the ellipsoid has eyes and lips: flat grey shows no face at all
    grey = torch.full_like(cap.images, 0.5)
    base_pos, _, _ = builtin_priors(grey, cap.masks, cap.cameras)
    pos, _, info, note = face_mesh_priors(grey, cap.masks, cap.cameras)
    assert "fewer than two views show a face" in note and torch.equal(pos, base_pos)


def test_facemesh_key_and_command(tmp_path):
    from avat3r_cli.app import app

    cap, _ = scene_capture(4, 48, seed=2)
    key = priors_settings_key(cap, backend="facemesh", resolution=48)
    assert key["backend"] == "facemesh" and "facemesh.trust_support" in key and "builtin.coarse" in key
    assert key != priors_settings_key(cap, backend="builtin", resolution=48)
    root = write_capture(tmp_path / "cap", cap.images, cap.masks, cap.cameras)
    runner = CliRunner()
    args = ["priors", str(root), "--backend", "facemesh", "--resolution", "48", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "facemesh" in res.output and "face mesh" in res.output  # the note says why there is no mesh
    assert "kept current" in runner.invoke(app, args + ["--quiet"]).output
    res = runner.invoke(app, ["priors", str(root), "--backend", "facemash"])
    assert res.exit_code == 2 and "facemesh" in res.output
    # reconstruct without --backend keeps the capture's face-mesh priors instead of recomputing built-in ones
    from stages.capture import read_capture
    from stages.priors import load_or_compute_priors

    kept = load_or_compute_priors(read_capture(root), backend=None, resolution=48)
    assert kept.meta.get("info.reused") == "true" and kept.meta["backend"] == "facemesh"
    forced = load_or_compute_priors(read_capture(root), backend="builtin", resolution=48)
    assert forced.meta.get("info.reused") is None and forced.meta["backend"] == "builtin"


@pytest.mark.gpu
def test_facemesh_on_cuda_matches_cpu(head):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from stages.priors.face_prior import face_mesh_priors

    rgb, alpha, cams, t_gt = head
    cpu, conf_cpu, _, _ = face_mesh_priors(rgb, alpha, cams)
    gpu, conf_gpu, _, note = face_mesh_priors(rgb.cuda(), alpha.cuda(), cams.to("cuda"))
    assert "detected in 3 of 3 views" in note
    fg = (alpha > 0.5) & (t_gt > 0)
    o, d = cams.rays()
    truth = o + t_gt[..., None] * d
    err_cpu = (cpu - truth).norm(dim=-1)[fg].median()
    err_gpu = (gpu.cpu() - truth).norm(dim=-1)[fg].median()
    assert abs(float(err_gpu - err_cpu)) < 5e-4
    assert abs(float((conf_gpu.cpu() > 0.5)[fg].float().mean() - (conf_cpu > 0.5)[fg].float().mean())) < 0.05
    assert not math.isnan(float(err_gpu))
