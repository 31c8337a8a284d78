"""The network: shapes, the no-learning start, identity caching, expression dependence, view counts."""

from __future__ import annotations

import pytest
import torch

from stages.cameras import dome
from stages.model import Avat3rNet, preset


def _inputs(cfg, views=4, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.image_size
    cams = dome(views * batch, size=H)
    imgs = torch.rand(batch, views, H, H, 3, generator=g)
    pos = torch.randn(batch, views, H, H, 3, generator=g) * 0.1
    conf = torch.rand(batch, views, H, H, generator=g)
    masks = (torch.rand(batch, views, H, H, generator=g) > 0.2).float()
    return imgs, pos, conf, masks, cams


def _perturb(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_untrained_model_is_the_prior_baseline():
    cfg = preset("tiny")
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    with torch.no_grad():
        maps = model(imgs, pos, conf, masks, cams, torch.zeros(1, cfg.expr_dim))
    keep = maps.keep
    assert keep.shape == (1, 4, 64, 64)
    assert torch.equal(keep, (masks > 0.5) & (conf >= 0.5))
    assert torch.allclose(maps.means[keep], pos[keep])
    assert torch.allclose(maps.colors, imgs)
    q = maps.quats.norm(dim=-1)
    assert torch.allclose(q, torch.ones_like(q))


def test_gaussian_count_follows_the_kept_pixels():
    cfg = preset("tiny")
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    with torch.no_grad():
        maps = model(imgs, pos, conf, masks, cams, torch.zeros(1, cfg.expr_dim))
    g = maps.gaussians(0)
    assert len(g) == int(((masks > 0.5) & (conf >= 0.5)).sum())
    assert len(maps.gaussians(0, drop=False)) == 4 * 64 * 64


def test_cached_identity_equals_full_forward_and_expression_matters():
    cfg = preset("tiny")
    model = Avat3rNet(cfg).eval()
    _perturb(model)
    imgs, pos, conf, masks, cams = _inputs(cfg)
    a, b = torch.zeros(1, cfg.expr_dim), torch.zeros(1, cfg.expr_dim)
    b[0, 17] = 1.0  # jawOpen
    with torch.no_grad():
        full = model(imgs, pos, conf, masks, cams, a)
        state = model.encode_identity(imgs, pos, conf, masks, cams)
        cached = model.decode(state, a)
        other = model.decode(state, b)
    assert torch.allclose(full.means, cached.means, atol=1e-6)
    assert torch.allclose(full.colors, cached.colors, atol=1e-6)
    again = model.decode(state, a)
    assert torch.equal(again.means, cached.means)  # deterministic per frame
    assert (other.means - cached.means).abs().max() > 1e-6  # and the expression reaches the output
    assert (other.colors - cached.colors).abs().max() > 1e-6


@pytest.mark.parametrize("layout", ["stacked", "interleaved"])
@pytest.mark.parametrize("views", [1, 2, 4])
def test_any_view_count_and_layout(views, layout):
    cfg = preset("tiny", layout=layout)
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg, views=views, batch=2)
    with torch.no_grad():
        maps = model(imgs, pos, conf, masks, cams, torch.rand(2, cfg.expr_dim))
    assert maps.means.shape == (2, views, 64, 64, 3)
    assert torch.isfinite(maps.means).all() and torch.isfinite(maps.log_scales).all()


def test_ablation_switches_build_and_run():
    for overrides in ({"use_pos_prior": False}, {"pos_skip": False}, {"rgb_skip": False}, {"feat_dim": 8}):
        cfg = preset("tiny", **overrides)
        model = Avat3rNet(cfg).eval()
        imgs, pos, conf, masks, cams = _inputs(cfg)
        feat = torch.rand(1, 4, 4, 4, 8) if cfg.feat_dim else None
        with torch.no_grad():
            maps = model(imgs, pos, conf, masks, cams, torch.zeros(1, cfg.expr_dim), feat)
        assert torch.isfinite(maps.means).all(), overrides
        if not cfg.rgb_skip:
            assert not torch.allclose(maps.colors, imgs)


def test_too_many_views_is_refused():
    cfg = preset("tiny")
    model = Avat3rNet(cfg)
    imgs, pos, conf, masks, cams = _inputs(cfg, views=5)
    with pytest.raises(ValueError, match="at most 4 views"):
        model.encode_identity(imgs, pos, conf, masks, cams)


def test_kept_pixel_decoding_equals_full_maps():
    """The driver's fast path (upsampler on a window around each view's kept pixels, head and activations on
    kept pixels only, the skip half of `fuse` cached per avatar) gives the Gaussians of the full per-pixel maps,
    with and without the skips; the windows really are smaller than the image when the head is. A stacked
    decoder (cross-attention only) decodes the windows' tokens alone; an interleaved one must decode them all."""
    from stages.cameras import look_at, make_cameras, spherical_eye

    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    blob = (((yy - 60) ** 2 + (xx - 70) ** 2) < 26**2).float()
    cases = (({}, blob, True), ({"pos_skip": False, "rgb_skip": False}, None, False),
             ({"layout": "interleaved", "self_layers": 2, "cross_layers": 2}, blob, True))
    for overrides, mask, cropped in cases:
        torch.manual_seed(0)
        model = Avat3rNet(preset("tiny", image_size=128, **overrides)).eval()
        torch.nn.init.normal_(model.head.weight, std=0.1)
        eyes = spherical_eye(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 0.0]), 1.0)
        cams = make_cameras(look_at(eyes), 120.0, 128)
        images, pos = torch.rand(1, 2, 128, 128, 3), torch.randn(1, 2, 128, 128, 3) * 0.1
        conf = torch.rand(1, 2, 128, 128)
        masks = (torch.rand(1, 2, 128, 128) > 0.3).float() if mask is None else mask.expand(1, 2, 128, 128)
        with torch.no_grad():
            state = model.encode_identity(images, pos, conf, masks, cams)
            code = torch.rand(1, 52)
            full = model.decode(state, code).gaussians(0)
            kept_pixels = model.kept_pixels(state)
            kept = model.decode_kept(state, code, kept_pixels)
        _, _, ht, wt = kept_pixels.window
        assert (ht * wt < (128 // 8) ** 2) == cropped
        assert model.tokenwise_decoder == (overrides.get("layout", "stacked") == "stacked")
        assert (kept_pixels.tokens is not None) == model.tokenwise_decoder
        if kept_pixels.tokens is not None:
            assert kept_pixels.tokens.shape[1] == 2 * ht * wt
        assert 0 < len(kept) == len(full) < 2 * 128 * 128
        for name in ("means", "quats", "log_scales", "opacity_logits", "colors"):
            assert torch.allclose(getattr(kept, name), getattr(full, name), atol=1e-5), name
