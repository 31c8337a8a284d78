"""The rasteriser's inference path (`stages.render.fastpath`) and the binning it shares with the autograd
path: the same images as the autograd path and as the dense reference of test_render, for every tile size,
round size and chunk size; tight (ellipse) tile lists that only drop entries which composite nothing."""

from __future__ import annotations

import pytest
import torch
from render_cases import F64, odd_cameras, random_gaussians

from stages.cameras import orbit
from stages.render import project, render, scaled_rotations
from stages.render.rasterizer import bin_tiles, depth_order, needs_grad, pixel_boxes, rasterize
from stages.render.reference import reference_render as reference


def projected(g, cams):
    cams = cams.to(dtype=g.means.dtype)
    rs, op = scaled_rotations(g.quats, g.log_scales.exp()), torch.sigmoid(g.opacity_logits)
    vm, K = cams.viewmats(), cams.K()
    projs = [project(g.means, rs, op, vm[c], K[c], cams.width, cams.height) for c in range(len(cams))]
    return projs, [g.colors[p.ids] for p in projs]


@pytest.mark.parametrize("tile,batch,chunk", [(4, 16, 1 << 18), (8, 4, 1 << 10), (16, 1, 1 << 8), (4, 64, 64)])
def test_fast_path_matches_dense_reference_float64(tile: int, batch: int, chunk: int):
    # opaque layers (many pixels stop at T = 1e-4), two odd cameras rasterised together
    g = random_gaussians(150, seed=tile + batch, op_shift=2.5)
    cams = odd_cameras(2).to(dtype=F64)
    projs, cols = projected(g, cams)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], dtype=F64)
    out = rasterize(projs, cols, cams.width, cams.height, bg, tile=tile, batch=batch, fast=True, chunk_elements=chunk)
    ref = reference(g, cams, bg)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    assert (1 - out[1]).min() < 2e-4, "some pixels should have stopped at transmittance 1e-4"


def test_fast_path_matches_autograd_path_float32():
    g = random_gaussians(2000, seed=3, dtype=torch.float32, scale=0.01, op_shift=1.0)
    cams = odd_cameras(3).to(dtype=torch.float32)
    projs, cols = projected(g, cams)
    bg = torch.rand(3, 3, generator=torch.Generator().manual_seed(0))
    fast = rasterize(projs, cols, cams.width, cams.height, bg, fast=True)
    slow = rasterize(projs, cols, cams.width, cams.height, bg, fast=False)
    assert fast[1].max() > 0.99 and fast[1].min() < 0.01
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_render_picks_the_fast_path_only_without_gradients():
    g = random_gaussians(30, seed=2)
    projs, cols = projected(g, odd_cameras(1))
    assert not needs_grad(projs, cols)
    g.means.requires_grad_(True)
    projs, cols = projected(g, odd_cameras(1))
    assert needs_grad(projs, cols)
    with torch.no_grad():
        projs, cols = projected(g, odd_cameras(1))
        assert not needs_grad(projs, cols)
    with torch.inference_mode():
        out = render(g, odd_cameras(1))
    assert not out.rgb.requires_grad
    out = render(g, odd_cameras(1))  # the autograd path still gives gradients
    out.rgb.sum().backward()
    assert g.means.grad is not None and g.means.grad.abs().sum() > 0


def test_empty_and_invisible_scenes():
    g = random_gaussians(0, seed=0)
    out = render(g, odd_cameras(1), (0.1, 0.2, 0.3))
    torch.testing.assert_close(out.rgb, torch.tensor([0.1, 0.2, 0.3], dtype=F64).expand_as(out.rgb))
    assert (out.alpha == 0).all()


def test_depth_order_is_a_stable_argsort():
    d = torch.tensor([0.5, 0.2, 0.5, 1e-3, 7.0, 0.2, 0.5])
    torch.testing.assert_close(depth_order(d), torch.argsort(d, stable=True))
    torch.testing.assert_close(depth_order(d.double()), torch.argsort(d.double(), stable=True))
    neg = torch.tensor([0.3, -0.2, 0.0, -0.2])  # not all positive: the float sort
    torch.testing.assert_close(depth_order(neg), torch.argsort(neg, stable=True))


def naive_lists(means2d, radii, depths, image_ids, n_images, width, height, tile) -> list[list[int]]:
    """Every tile's Gaussians (bounding box overlap), by depth then index: the definition, in Python."""
    tw, th = -(-width // tile), -(-height // tile)
    x0, x1, y0, y1 = (t.tolist() for t in pixel_boxes(means2d, radii, width, height))
    lists: list[list[int]] = [[] for _ in range(n_images * tw * th)]
    for i in sorted(range(len(depths)), key=lambda i: (float(depths[i]), i)):
        for ty in range(y0[i] // tile, y1[i] // tile + 1):
            for tx in range(x0[i] // tile, x1[i] // tile + 1):
                if x1[i] >= x0[i] and y1[i] >= y0[i]:
                    lists[(int(image_ids[i]) * th + ty) * tw + tx].append(i)
    return lists


@pytest.mark.parametrize("tile", [4, 8, 16])
def test_bins_are_the_depth_sorted_tile_lists(tile: int):
    g = random_gaussians(80, seed=tile, scale=0.03)
    projs, _ = projected(g, odd_cameras(2))
    m2d, radii, depths = (torch.cat([getattr(p, f) for p in projs]) for f in ("means2d", "radii", "depths"))
    depths[3] = depths[7]  # a tie: index order
    ids = torch.repeat_interleave(torch.arange(2), torch.tensor([len(p.ids) for p in projs]))
    want = naive_lists(m2d, radii, depths, ids, 2, 37, 29, tile)
    bins = bin_tiles(m2d, radii, depths, ids, 2, 37, 29, tile)
    got = [bins.gid[o:o + n].tolist() for o, n in zip(bins.offset.tolist(), bins.count.tolist(), strict=True)]
    assert got == want
    assert sum(map(len, want)) > 100


@pytest.mark.parametrize("tile", [4, 8])
def test_tight_lists_drop_only_entries_that_composite_nothing(tile: int):
    # large anisotropic Gaussians: their bounding boxes cover many tiles the ellipse misses
    g = random_gaussians(60, seed=9, scale=0.05, op_shift=-1.0)
    cams = odd_cameras(2).to(dtype=F64)
    projs, cols = projected(g, cams)
    cat = {f: torch.cat([getattr(p, f) for p in projs]) for f in ("means2d", "radii", "depths", "conics",
                                                                    "opacities")}
    ids = torch.repeat_interleave(torch.arange(2), torch.tensor([len(p.ids) for p in projs]))
    args = (cat["means2d"], cat["radii"], cat["depths"], ids, 2, 37, 29, tile)
    loose, tight = bin_tiles(*args), bin_tiles(*args, cat["conics"], cat["opacities"])
    assert len(tight.gid) < 0.9 * len(loose.gid)
    # each tight list is a subsequence of the loose one; every dropped entry has alpha < 1/255 at every pixel
    jj, ii = torch.meshgrid(torch.arange(37, dtype=F64) + 0.5, torch.arange(29, dtype=F64) + 0.5, indexing="xy")
    tw = -(-37 // tile)
    for t in range(len(loose.count)):
        lo = loose.gid[loose.offset[t]:loose.offset[t] + loose.count[t]].tolist()
        ti = tight.gid[tight.offset[t]:tight.offset[t] + tight.count[t]].tolist()
        assert [i for i in lo if i in set(ti)] == ti
        ty, tx = divmod(t % (len(loose.count) // 2), tw)
        win = (slice(ty * tile, ty * tile + tile), slice(tx * tile, tx * tile + tile))
        for i in set(lo) - set(ti):
            (mx, my), (a, b, c) = cat["means2d"][i], cat["conics"][i]
            dx, dy = jj[win] - mx, ii[win] - my
            alpha = cat["opacities"][i] * torch.exp(-(0.5 * a * dx * dx + b * dx * dy + 0.5 * c * dy * dy))
            assert float(alpha.max()) < 1 / 255
    # and the images agree with the dense reference either way
    ref = reference(g, cams, torch.zeros(2, 3, dtype=F64))
    out = rasterize(projs, cols, 37, 29, torch.zeros(2, 3, dtype=F64), tile=tile)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.gpu
def test_fast_path_matches_gsplat_and_autograd_path_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    g = random_gaussians(20_000, seed=7, dtype=torch.float32, scale=0.01).to("cuda")
    cams = orbit(2, radius=0.8, focal=300, size=128).to("cuda")
    with torch.no_grad():
        fast = render(g, cams, (0.2, 0.3, 0.4), backend="torch")
        ref = render(g, cams, (0.2, 0.3, 0.4), backend="gsplat")
    g.means.requires_grad_(True)
    slow = render(g, cams, (0.2, 0.3, 0.4), backend="torch")
    # against gsplat: isolated pixels may differ where two depths tie within float32 rounding
    diff = (fast.rgb - ref.rgb).abs()
    assert float(torch.quantile(diff.flatten(), 0.999)) < 1e-4 and float(diff.max()) < 2e-2
    for a, b in zip((fast.rgb, fast.alpha), (slow.rgb.detach(), slow.alpha.detach()), strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_chunk_size_reaches_the_fast_path(monkeypatch):
    """rasterize(chunk_elements=N) hands N to the fast path by name (the float64 test above relies on it)."""
    from stages.render import fastpath

    seen = []
    real = fastpath.composite

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_elements"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastpath, "composite", spy)
    g = random_gaussians(20, seed=1)
    cams = odd_cameras(1).to(dtype=F64)
    projs, cols = projected(g, cams)
    bg = torch.zeros(1, 3, dtype=F64)
    rasterize(projs, cols, cams.width, cams.height, bg, fast=True, chunk_elements=64)
    rasterize(projs, cols, cams.width, cams.height, bg, fast=True)
    assert seen == [64, None]
