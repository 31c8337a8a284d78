"""The renderer against an independent dense reference (gsplat's own pure-torch projection, every Gaussian
evaluated at every pixel, composited one by one): values and gradients in float64, finite differences,
and simple scenes whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from render_cases import F64, odd_cameras, random_gaussians

from stages.cameras import Cameras, look_at, make_cameras, orbit, spherical_eye
from stages.gaussians import SH_C0, Gaussians
from stages.render import pick_backend, project, render, scaled_rotations, view_colors
from stages.render.rasterizer import rasterize
from stages.render.reference import reference_render as reference


# ----- reference ------------------------------------------------------------------------------------------
def leaves(g: Gaussians) -> list[torch.Tensor]:
    ps = [g.means, g.quats, g.log_scales, g.opacity_logits, g.colors]
    ps += [g.sh_rest] if g.sh_rest is not None else []
    for p in ps:
        p.requires_grad_(True)
    return ps


# ----- against the reference ------------------------------------------------------------------------------
@pytest.mark.parametrize("sh_k,op_shift", [(0, 0.0), (3, 0.0), (15, 0.0), (0, 4.0)])
def test_matches_dense_reference_values_and_gradients(sh_k: int, op_shift: float):
    # op_shift 4: nearly opaque layers, so many pixels hit the 1e-4 transmittance stop
    g = random_gaussians(120, seed=sh_k + 1, sh_k=sh_k, op_shift=op_shift)
    cams = odd_cameras()
    bg = torch.tensor([[0.2, 0.5, 0.9], [1.0, 1.0, 1.0], [0.0, 0.3, 0.0]], dtype=F64)
    params = leaves(g)
    ours = render(g, cams, bg, backend="torch")
    ref = reference(g, cams, bg)
    for a, b in zip((ours.rgb, ours.alpha, ours.depth), ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert ours.alpha.max() > 0.9 and ours.alpha.min() < 0.1, "want both covered and empty pixels"
    gen = torch.Generator().manual_seed(9)
    weights = [torch.randn(t.shape, generator=gen, dtype=F64) for t in ref]

    def loss(outs):
        return sum((w * o).sum() for w, o in zip(weights, outs, strict=True))

    g_ours = torch.autograd.grad(loss((ours.rgb, ours.alpha, ours.depth)), params)
    g_ref = torch.autograd.grad(loss(ref), params)
    for a, b in zip(g_ours, g_ref, strict=True):
        assert b.abs().max() > 0, "every parameter should receive a gradient"
        torch.testing.assert_close(a, b, atol=1e-9 * float(b.abs().max()), rtol=1e-7)


def test_termination_is_exercised():
    g = random_gaussians(120, seed=1, op_shift=4.0)
    out = render(g, odd_cameras(), backend="torch")
    assert (1 - out.alpha).min() < 2e-4  # some pixels stopped at transmittance ~1e-4


@pytest.mark.parametrize("tile,batch,max_elements", [(4, 1, 1 << 22), (8, 5, 1 << 22), (16, 64, 1 << 22),
                                                     (4, 16, 1 << 14)])
def test_tile_and_batch_sizes_do_not_change_the_result(tile: int, batch: int, max_elements: int):
    g = random_gaussians(150, seed=4, op_shift=2.0)
    cams = odd_cameras(2).to(dtype=F64)
    rs, op = scaled_rotations(g.quats, g.log_scales.exp()), torch.sigmoid(g.opacity_logits)
    projs = [project(g.means, rs, op, cams.viewmats()[c], cams.K()[c], 37, 29) for c in range(2)]
    cols = [g.colors[p.ids] for p in projs]
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], dtype=F64)
    ref = reference(g, cams, bg)
    out = rasterize(projs, cols, 37, 29, bg, tile=tile, batch=batch, max_elements=max_elements)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_projection_matches_gsplat_reference():
    g = random_gaussians(200, seed=5)
    cams = odd_cameras(1).to(dtype=F64)
    scales, op = g.log_scales.exp(), torch.sigmoid(g.opacity_logits)
    p = project(g.means, scaled_rotations(g.quats, scales), op, cams.viewmats()[0], cams.K()[0], 37, 29)
    covars, _ = _quat_scale_to_covar_preci(g.quats, scales, compute_preci=False)
    radii, m2d, depths, conics, _ = _fully_fused_projection(g.means, covars, cams.viewmats(), cams.K(), 37,
                                                            29)
    assert len(p.ids) > 50
    torch.testing.assert_close(p.means2d, m2d[0, p.ids])
    torch.testing.assert_close(p.depths, depths[0, p.ids])
    torch.testing.assert_close(p.conics, conics[0, p.ids])
    # opacity-aware radii are never larger than the plain 3.33-sigma ones, and culling keeps a subset
    assert (p.radii <= radii[0, p.ids]).all()
    assert set(p.ids.tolist()) <= set((radii[0] > 0).all(-1).nonzero()[:, 0].tolist())


def test_sh_colours_match_gsplat():
    g = random_gaussians(50, seed=6, sh_k=15)
    campos = torch.tensor([[0.3, -0.2, 0.9], [-1.0, 0.5, 0.2]], dtype=F64)
    coeffs = torch.cat([((g.colors - 0.5) / SH_C0)[:, None], g.sh_rest], 1)
    for c in range(2):
        want = torch.clamp_min(_spherical_harmonics(3, g.means - campos[c], coeffs) + 0.5, 0.0)
        torch.testing.assert_close(view_colors(g, campos)[c], want)


def test_gradcheck_against_finite_differences():
    g = random_gaussians(4, seed=11, scale=0.06, op_shift=1.0)
    cams = orbit(1, radius=0.7, focal=30, size=10)
    bg = torch.tensor([0.3, 0.6, 0.1], dtype=F64)

    def f(means, quats, log_scales, logits, colors):
        out = render(Gaussians(means, quats, log_scales, logits, colors), cams, bg, backend="torch")
        return out.rgb, out.alpha, out.depth * out.alpha

    fields = (g.means, g.quats, g.log_scales, g.opacity_logits, g.colors)
    inputs = tuple(t.clone().requires_grad_(True) for t in fields)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-5, rtol=1e-4, fast_mode=True)


# ----- closed-form scenes ---------------------------------------------------------------------------------
def front_camera(size: int = 32, focal: float = 50.0) -> Cameras:
    c2w = look_at(torch.tensor([[0.0, 0.0, 1.0]]))  # at +z, looking at the origin (the face's view)
    return Cameras(c2w, torch.tensor([focal]), torch.tensor([focal]), torch.tensor([size / 2]),
                   torch.tensor([size / 2]), size, size)


def one_gaussian(mean, scale=0.01, logit=10.0, color=(0.2, 0.4, 0.8), flat=False) -> Gaussians:
    log_s = torch.full((1, 3), math.log(scale))
    if flat:
        log_s[0, 2] = math.log(1e-5)  # a disc facing the camera
    return Gaussians(torch.tensor([mean]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]), log_s, torch.tensor([logit]),
                     torch.tensor([color]))


def test_isotropic_gaussian_lands_on_expected_pixel():
    # x = 0.09 m right, y = 0.05 m up at depth 1 m: u = 50 * 0.09 + 16 = 20.5, v = 16 - 50 * 0.05 = 13.5,
    # i.e. the centre of pixel (row 13, column 20): +x is image right, +y is image up
    out = render(one_gaussian([0.09, 0.05, 0.0]), front_camera())
    a = out.alpha[0, ..., 0]
    row, col = divmod(int(a.argmax()), a.shape[1])
    assert (row, col) == (13, 20)
    torch.testing.assert_close(a[12, 20], a[14, 20])  # symmetric about the centre pixel
    torch.testing.assert_close(a[13, 19], a[13, 21])
    # peak alpha: sigmoid(10) * exp(0) capped at 0.999
    assert abs(float(a[13, 20]) - 0.999) < 1e-6


def test_mirrored_cameras_see_the_mirrored_world_flipped_left_to_right():
    """`Cameras.mirrored` (the video mirror augmentation): Gaussians mirrored across x = 0 (means x -> -x,
    rotations S R S, i.e. quaternion (w, x, -y, -z)) seen by the mirrored cameras render each camera's image
    flipped left to right, depth included, for off-centre non-square cameras."""
    g = random_gaussians(80, seed=5)
    m = Gaussians(g.means * torch.tensor([-1.0, 1.0, 1.0], dtype=F64), g.quats * torch.tensor(
        [1.0, 1.0, -1.0, -1.0], dtype=F64), g.log_scales, g.opacity_logits, g.colors)
    cams = odd_cameras().to(dtype=F64)
    a, b = render(g, cams, backend="torch"), render(m, cams.mirrored(), backend="torch")
    assert a.alpha.amax() > 0.5
    torch.testing.assert_close(b.rgb, a.rgb.flip(2))
    torch.testing.assert_close(b.depth, a.depth.flip(2))
    assert torch.allclose(torch.linalg.det(cams.mirrored().c2w[:, :3, :3]), torch.ones(3, dtype=F64))
    torch.testing.assert_close(cams.mirrored().mirrored().c2w, cams.c2w)


def test_depth_of_fronto_parallel_gaussian_is_its_z():
    out = render(one_gaussian([0.0, 0.0, 0.3], scale=0.05, logit=0.0, flat=True), front_camera())
    alpha, depth = out.alpha[0, ..., 0], out.depth[0, ..., 0]
    covered = alpha > 0
    assert covered.sum() > 20
    torch.testing.assert_close(depth[covered], torch.full_like(depth[covered], 0.7))
    assert (depth[~covered] == 0).all()


def test_background_compositing():
    color = torch.tensor([0.2, 0.4, 0.8])
    bg = torch.tensor([1.0, 0.5, 0.0])
    out = render(one_gaussian([0.0, 0.0, 0.0], scale=0.03, logit=0.5, color=tuple(color.tolist())),
                 front_camera(), bg)
    a = out.alpha[0]
    torch.testing.assert_close(out.rgb[0], a * color + (1 - a) * bg)
    assert a.max() > 0.5 and a.min() == 0
    torch.testing.assert_close(out.rgb[0][a[..., 0] == 0], bg.expand(int((a == 0).sum()), 3))


def test_nothing_visible_gives_background():
    cams = front_camera()
    behind = one_gaussian([0.0, 0.0, 1.5])  # behind the camera
    z = torch.zeros
    empty = Gaussians(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, 3))
    for g in (behind, empty):
        out = render(g, cams, (0.1, 0.2, 0.3))
        assert out.rgb.shape == (1, 32, 32, 3) and out.alpha.shape == out.depth.shape == (1, 32, 32, 1)
        torch.testing.assert_close(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(1, 32, 32, 3))
        assert (out.alpha == 0).all() and (out.depth == 0).all()


def test_backend_choice():
    assert pick_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="CUDA"):
        pick_backend("gsplat", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown"):
        pick_backend("opengl", torch.device("cpu"))


# ----- GPU ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_torch_backend_matches_gsplat_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = random_gaussians(3000, seed=7, dtype=torch.float32, scale=0.01).to("cuda")
    cams = orbit(2, radius=0.8, focal=300, size=128).to("cuda")
    params = leaves(g)
    outs, grads = [], []
    for backend in ("gsplat", "torch"):
        o = render(g, cams, (0.2, 0.3, 0.4), backend=backend)
        outs.append(o)
        grads.append(torch.autograd.grad(o.rgb.sum() + o.alpha.sum(), params))
    # isolated pixels may differ where two depths tie within float32 rounding; most agree closely
    diff = (outs[0].rgb - outs[1].rgb).abs()
    assert float(torch.quantile(diff.flatten(), 0.999)) < 1e-4 and float(diff.max()) < 2e-2
    for a, b in zip(grads[1], grads[0], strict=True):
        assert float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)) > 0.999


def test_no_gaussians_render_the_background():
    """An avatar that keeps no pixel renders as its background instead of crashing the rasteriser."""
    g = Gaussians(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3))
    cams = make_cameras(look_at(spherical_eye(torch.tensor([0.0]), torch.tensor([0.0]), 1.0)), 40.0, 16)
    out = render(g, cams, background=(0.2, 0.4, 0.6))
    assert out.rgb.shape == (1, 16, 16, 3) and torch.allclose(out.rgb[0, 3, 5], torch.tensor([0.2, 0.4, 0.6]))
    assert float(out.alpha.abs().max()) == 0.0
