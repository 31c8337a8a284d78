"""The network: shapes, the no-learning start, identity caching, expression dependence, view counts."""

from __future__ import annotations

import pytest
import torch

from stages.cameras import dome
from stages.model import Avat3rNet, preset
from stages.model import kept as kept_mod


@pytest.fixture(autouse=True)
def _seeded():
    """Models draw their initial weights from torch's global generator: seed it so each test sees fixed weights."""
    torch.manual_seed(0)


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
    cfg = preset("tiny", conf_threshold=0.5)  # the paper's rule: unconfident pixels are dropped
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    with torch.no_grad():
        maps = model(imgs, pos, conf, masks, cams, torch.zeros(1, cfg.expr_dim))
    keep = maps.keep
    assert keep.shape == (1, 4, 64, 64)
    assert torch.equal(keep, (masks > 0.5) & (conf >= 0.5)) and not torch.equal(keep, masks > 0.5)
    assert torch.allclose(maps.means[keep], pos[keep])
    assert torch.allclose(maps.colors, imgs)
    q = maps.quats.norm(dim=-1)
    assert torch.allclose(q, torch.ones_like(q))


def test_gaussian_count_follows_the_kept_pixels():
    imgs, pos, conf, masks, cams = _inputs(preset("tiny"))
    for threshold, keep in ((0.5, (masks > 0.5) & (conf >= 0.5)), (None, masks > 0.5)):
        cfg = preset("tiny") if threshold is None else preset("tiny", conf_threshold=threshold)
        model = Avat3rNet(cfg).eval()
        with torch.no_grad():
            maps = model(imgs, pos, conf, masks, cams, torch.zeros(1, cfg.expr_dim))
        assert len(maps.gaussians(0)) == int(keep.sum())  # the default (0) keeps every foreground pixel
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
    """With trained-like (perturbed) weights and no view-index embedding, the views are an unordered set:
    permuting them permutes the outputs; a view's Gaussians depend on the other views (cross-view attention) but
    never on another avatar of the batch."""
    cfg = preset("tiny", layout=layout)
    model = Avat3rNet(cfg).eval()
    _perturb(model)
    with torch.no_grad():
        model.view_embed.zero_()
    imgs, pos, conf, masks, cams = _inputs(cfg, views=views, batch=2)
    codes = torch.rand(2, cfg.expr_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        maps = model(imgs, pos, conf, masks, cams, codes)
        assert maps.means.shape == (2, views, 64, 64, 3)
        order = list(range(views))[::-1] if views > 1 else [0]
        cam_order = [b * views + v for b in range(2) for v in order]
        perm = model(imgs[:, order], pos[:, order], conf[:, order], masks[:, order], cams[cam_order], codes)
        for name in ("means", "colors", "log_scales", "quats", "opacity_logits"):
            torch.testing.assert_close(getattr(perm, name), getattr(maps, name)[:, order], atol=2e-5, rtol=1e-4)
        other = imgs.clone()
        other[1] = torch.rand(other[1].shape, generator=torch.Generator().manual_seed(9))  # avatar 1 only
        batch_changed = model(other, pos, conf, masks, cams, codes)
        other = imgs.clone()
        other[0, -1] = 1 - other[0, -1]  # the last view of avatar 0 only
        view_changed = model(other, pos, conf, masks, cams, codes)
    assert (batch_changed.means[1] - maps.means[1]).abs().max() > 1e-4
    torch.testing.assert_close(batch_changed.means[0], maps.means[0], atol=1e-6, rtol=0)  # no leak across avatars
    if views > 1:  # the unchanged views see the changed one through attention (float noise is below 1e-6)
        assert (view_changed.means[0, :-1] - maps.means[0, :-1]).abs().max() > 1e-5


def _twins(overrides: dict, seed: int = 1) -> tuple[Avat3rNet, Avat3rNet]:
    """The full model and an ablated one (a switch that changes no weight shape) with the same perturbed weights."""
    full = Avat3rNet(preset("tiny")).eval()
    _perturb(full, seed)
    ablated = Avat3rNet(preset("tiny", **overrides)).eval()
    ablated.load_state_dict(full.state_dict())
    return full, ablated


def test_rgb_skip_off_predicts_colours_without_adding_the_image():
    """rgb_skip: colour = image + residual; without it colour = sigmoid(the same residual)."""
    full, ablated = _twins({"rgb_skip": False})
    imgs, pos, conf, masks, cams = _inputs(full.cfg)
    code = torch.zeros(1, full.cfg.expr_dim)
    with torch.no_grad():
        a = full(imgs, pos, conf, masks, cams, code)
        b = ablated(imgs, pos, conf, masks, cams, code)
    residual = a.colors - imgs
    assert residual.abs().max() > 1e-3  # a non-zero head, so the two can differ
    torch.testing.assert_close(b.colors, torch.sigmoid(residual), atol=1e-5, rtol=0)
    torch.testing.assert_close(b.means, a.means)  # nothing else moves


def test_pos_skip_off_places_gaussians_on_their_pixel_rays():
    """pos_skip: mean = prior point + bounded offset; without it the mean lies on the pixel's own ray at the
    camera's distance ± 0.25 m, driven by the same first offset channel."""
    full, ablated = _twins({"pos_skip": False})
    cfg = full.cfg
    imgs, pos, conf, masks, cams = _inputs(cfg)
    code = torch.zeros(1, cfg.expr_dim)
    with torch.no_grad():
        a = full(imgs, pos, conf, masks, cams, code)
        b = ablated(imgs, pos, conf, masks, cams, code)
    keep = a.keep
    tanh_off = (a.means - pos)[keep] / cfg.max_offset  # recovered from the full model's offsets
    assert tanh_off.abs().max() <= 1 and tanh_off.abs().max() > 1e-3
    o, d = cams.rays(64, 64)
    o, d = o.view(1, 4, 64, 64, 3)[keep], d.view(1, 4, 64, 64, 3)[keep]
    expected = o + d * (o.norm(dim=-1, keepdim=True) + 0.25 * tanh_off[:, :1])
    torch.testing.assert_close(b.means[keep], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.colors, a.colors)


def _prior_pair(use_pos_prior: bool, change_conf: bool) -> tuple:
    """Outputs of one perturbed model for the same images and two different positional priors."""
    cfg = preset("tiny", use_pos_prior=use_pos_prior)
    model = Avat3rNet(cfg).eval()
    _perturb(model)
    imgs, pos, conf, masks, cams = _inputs(cfg)
    code = torch.zeros(1, cfg.expr_dim)
    with torch.no_grad():
        a = model(imgs, pos, conf, masks, cams, code)
        b = model(imgs, pos.flip(2) * 2, 1 - conf if change_conf else conf, masks, cams, code)
    return a, b, masks


def test_without_the_positional_prior_the_output_ignores_it():
    """use_pos_prior=False: the positional map reaches neither the tokens, the skips nor the kept-pixel rule (the
    mask alone); with the prior, the same change moves the Gaussians."""
    a, b, masks = _prior_pair(False, change_conf=False)
    assert torch.equal(a.keep, masks > 0.5) and torch.equal(b.keep, a.keep)
    for name in ("means", "colors", "log_scales", "quats", "opacity_logits"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), atol=0, rtol=0)
    a, b, _ = _prior_pair(True, change_conf=False)
    assert (a.means - b.means).abs().max() > 1e-3


def test_without_the_positional_prior_the_output_ignores_its_confidence():
    a, b, _ = _prior_pair(False, change_conf=True)
    torch.testing.assert_close(b.colors, a.colors, atol=0, rtol=0)


def test_semantic_features_reach_the_output():
    cfg = preset("tiny", feat_dim=8)
    model = Avat3rNet(cfg).eval()
    _perturb(model)
    imgs, pos, conf, masks, cams = _inputs(cfg)
    code = torch.zeros(1, cfg.expr_dim)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        a = model(imgs, pos, conf, masks, cams, code, torch.rand(1, 4, 4, 4, 8, generator=g))
        b = model(imgs, pos, conf, masks, cams, code, torch.rand(1, 4, 4, 4, 8, generator=g))
    assert (a.means - b.means).abs().max() > 1e-5 and (a.colors - b.colors).abs().max() > 1e-4


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
    decoder (cross-attention only) decodes the windows' tokens alone; an interleaved one, or one with
    self-attention after the cross-attention, must decode them all."""
    from stages.cameras import look_at, make_cameras, spherical_eye

    yy, xx = torch.meshgrid(torch.arange(128), torch.arange(128), indexing="ij")
    blob = (((yy - 60) ** 2 + (xx - 70) ** 2) < 26**2).float()
    cases = (({}, blob, True), ({"pos_skip": False, "rgb_skip": False}, None, False),
             ({"layout": "interleaved", "self_layers": 2, "cross_layers": 2}, blob, True),
             ({"decoder_self_layers": 1}, blob, True))
    for overrides, mask, cropped in cases:
        torch.manual_seed(0)
        model = Avat3rNet(preset("tiny", image_size=128, **overrides)).eval()
        torch.nn.init.normal_(model.head.weight, std=0.1)
        for p in model.blocks[model.first_decoder_self:].parameters():  # past its no-op start
            torch.nn.init.normal_(p, std=0.1)
        eyes = spherical_eye(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 0.0]), 1.0)
        cams = make_cameras(look_at(eyes), 120.0, 128)
        images, pos = torch.rand(1, 2, 128, 128, 3), torch.randn(1, 2, 128, 128, 3) * 0.1
        conf = torch.rand(1, 2, 128, 128)
        masks = (torch.rand(1, 2, 128, 128) > 0.3).float() if mask is None else mask.expand(1, 2, 128, 128)
        with torch.no_grad():
            state = model.encode_identity(images, pos, conf, masks, cams)
            code = torch.rand(1, 52)
            full = model.decode(state, code).gaussians(0)
            kept_pixels = kept_mod.kept_pixels(model, state)
            kept = kept_mod.decode_kept(model, state, code, kept_pixels)
        _, _, ht, wt = kept_pixels.window
        assert (ht * wt < (128 // 8) ** 2) == cropped
        assert model.tokenwise_decoder == (overrides.get("layout", "stacked") == "stacked"
                                           and not overrides.get("decoder_self_layers"))
        assert (kept_pixels.tokens is not None) == model.tokenwise_decoder
        if kept_pixels.tokens is not None:
            assert kept_pixels.tokens.shape[1] == 2 * ht * wt
        assert 0 < len(kept) == len(full) < 2 * 128 * 128
        for name in ("means", "quats", "log_scales", "opacity_logits", "colors"):
            assert torch.allclose(getattr(kept, name), getattr(full, name), atol=1e-5), name
