"""`train --expr-contrast W`: synthetic examples whose supervision views are seen at two expressions, the change
between the two renders held to the ground truth's change; and the decoding that makes it cost one more decode,
not one per view."""

from __future__ import annotations

import json

import torch

from stages.cameras import Cameras, focal_for_extent, look_at, make_cameras, spherical_eye
from stages.train.data import Batch, SynthPool


def _pool(contrast: bool) -> SynthPool:
    return SynthPool(32, 4, 4, seed=5, slots=1, timesteps=3, cameras=12, lifetime=10**9, prior="gt", configs=1,
                     contrast=contrast)


def test_a_contrast_example_shows_the_same_views_at_two_expressions():
    ex = _pool(True).example(0, 0, 0, torch.device("cpu"))
    cams, codes = ex["target_cameras"], ex["target_codes"]
    assert ex["contrast"] and ex["target_rgb"].shape == (4, 32, 32, 3) and codes.shape == (4, 52)
    assert torch.equal(cams.c2w[:2], cams.c2w[2:])  # the same two views in both halves
    assert torch.equal(codes[0], codes[1]) and torch.equal(codes[2], codes[3])
    assert not torch.equal(codes[0], codes[2])  # at two different expressions
    assert torch.equal(codes[0], torch.as_tensor(ex["target_expr"]))  # the first half at the target code
    assert not torch.equal(ex["target_rgb"][0], ex["target_rgb"][2])  # and the images show it
    assert ex["target_expr_mask"].shape == (4, 32, 32)
    plain = _pool(False).example(0, 0, 0, torch.device("cpu"))
    assert "contrast" not in plain and "target_codes" not in plain
    assert len({tuple(c.flatten().tolist()) for c in plain["target_cameras"].c2w}) == 4  # four distinct views


def _cameras(n: int, size: int) -> Cameras:
    yaw = torch.linspace(-30.0, 30.0, n)
    return make_cameras(look_at(spherical_eye(yaw, torch.zeros(n), 1.0)), focal_for_extent(0.34, 1.0, size), size)


def test_decoding_once_per_distinct_code_renders_as_decoding_every_target():
    """An avatar with codes [a, a, b, b] is decoded twice, and its renders equal decoding each target alone."""
    from stages.model import Avat3rNet, preset
    from stages.render import render
    from stages.train.loop import decode_plan, predict, render_targets

    torch.manual_seed(0)
    net = Avat3rNet(preset("tiny")).eval()
    for p in net.parameters():
        if p.abs().max() == 0:
            torch.nn.init.normal_(p, std=0.05)
    V, T, S = 2, 4, net.cfg.image_size
    cams = _cameras(V + T // 2, S)
    a, b = torch.rand(52), torch.rand(52)
    codes = torch.stack([a, a, b, b])[None]
    targets = Cameras.cat([cams[V:], cams[V:]])
    batch = Batch(images=torch.rand(1, V, S, S, 3), masks=torch.ones(1, V, S, S), cameras=cams[:V],
                  pos=torch.rand(1, V, S, S, 3) * 0.1, conf=torch.ones(1, V, S, S), codes=codes[:, 0],
                  target_rgb=torch.rand(1, T, S, S, 3), target_alpha=torch.ones(1, T, S, S), target_cameras=targets,
                  target_codes=codes)
    picks, entry = decode_plan(codes)
    assert picks == [(0, 0), (0, 2)] and entry == [[0, 0, 1, 1]]
    bg = torch.rand(1, 3)
    with torch.no_grad():
        rgb, alpha = render_targets(*predict(net, batch), batch, bg)
        full = net(batch.images.expand(T, -1, -1, -1, -1), batch.pos.expand(T, -1, -1, -1, -1),
                   batch.conf.expand(T, -1, -1, -1), batch.masks.expand(T, -1, -1, -1),
                   Cameras.cat([cams[:V]] * T), codes[0])
    for t in range(T):
        ref = render(full.gaussians(t), targets[t], background=bg[0])
        assert torch.allclose(rgb[0, t], ref.rgb[0], atol=1e-4), t
        assert torch.allclose(alpha[0, t], ref.alpha[0, ..., 0], atol=1e-4), t
    assert not torch.equal(full.means[0], full.means[2])  # the two codes give two different avatars


def _contrast_batch(target: torch.Tensor, region: torch.Tensor) -> Batch:
    B, T, S = target.shape[0], target.shape[1], target.shape[-1]
    cams = _cameras(T, S)
    return Batch(images=torch.zeros(B, 1, S, S, 3), masks=torch.ones(B, 1, S, S), cameras=cams[:1],
                 pos=torch.zeros(B, 1, S, S, 3), conf=torch.ones(B, 1, S, S), codes=torch.zeros(B, 52),
                 target_rgb=target.permute(0, 1, 3, 4, 2), target_alpha=torch.ones(B, T, S, S),
                 target_cameras=Cameras.cat([cams] * B), target_expr_mask=region,
                 contrast=torch.ones(B, dtype=torch.bool))


def test_the_contrast_term_sees_only_the_change():
    from stages.train.loop import contrast_term

    torch.manual_seed(1)
    S = 16
    base = torch.rand(1, 1, 3, S, S)
    moved = base.clone()
    moved[..., 4:8, 4:8] = 1 - moved[..., 4:8, 4:8]  # the mouth changes between the two codes
    target = torch.cat([base, base, moved, moved], 1)  # (B=1, T=4, 3, H, W): two views at two codes
    region = torch.zeros(1, 4, S, S)
    region[..., 4:8, 4:8] = 1
    batch = _contrast_batch(target, region)
    flat = target.flatten(0, 1)
    assert float(contrast_term(flat, flat, batch)) == 0.0
    blurred = (base * 0.7 + 0.15).expand(1, 4, 3, S, S).clone()  # each image wrong,
    blurred[:, 2:] += moved - base  # but the change right
    assert float(contrast_term(blurred.flatten(0, 1), flat, batch)) < 1e-6
    ignores = torch.cat([base, base, base, base], 1).flatten(0, 1)  # a model that ignores the code
    assert float(contrast_term(ignores, flat, batch)) > 0.2
    wobble = target.clone()
    wobble[:, 2:, :, 12:, :] += 0.3  # the right change, plus a change where nothing moves
    assert float(contrast_term(wobble.flatten(0, 1), flat, batch)) > 0.01


def test_the_l2_contrast_charges_the_squared_shortfall_and_keeps_the_mean_change():
    """norm l2 scores a change scaled by g as (1 - g)² times what l1 gives a model that ignores the code (which
    both score alike: the truth's mean absolute change on the region, m); and where the
    model cannot tell which of two places changes (the mouth in one example, the eyes in the other, one region
    for both), it prefers half the change in both places over none at all, where l1 is indifferent: l1's
    minimiser is the median, which shrinks an uncertain change to nothing (the reason to offer l2)."""
    from stages.train.loop import contrast_term

    S = 16
    a, b = torch.zeros(S, S), torch.zeros(S, S)
    a[2:6, 2:6], b[8:12, 8:12] = 1, 1
    region = (a + b)[None, None].expand(2, 4, S, S)  # the pixels either example may change

    def pair(change: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) change → (B, T=4, 3, H, W): two views, two codes
        base = torch.full((2, 1, 3, S, S), 0.4)
        return torch.cat([base, base, base + change[:, None], base + change[:, None]], 1).flatten(0, 1)

    def score(change: torch.Tensor, gt: torch.Tensor, norm: str) -> float:
        batch = _contrast_batch(pair(gt).view(2, 4, 3, S, S), region)
        return float(contrast_term(pair(change), pair(gt), batch, norm))

    gt = torch.stack([a, b])[:, None].expand(2, 3, S, S) * 0.2  # example 0 changes at a, example 1 at b
    still = float(gt.abs().mean())  # the whole-image L1 part of a model that ignores the code
    m = 0.1  # the truth's mean absolute change over the region (0.2 on half of it)
    none = torch.zeros_like(gt)
    assert abs(score(none, gt, "l2") - (m + still)) < 1e-6 and abs(score(none, gt, "l1") - (m + still)) < 1e-6
    for g in (0.5, 2.0):
        assert abs(score(gt * g, gt, "l2") - ((1 - g) ** 2 * m + abs(1 - g) * still)) < 1e-6
        assert abs(score(gt * g, gt, "l1") - abs(1 - g) * (m + still)) < 1e-6
        assert abs(score(gt * 10 * g, gt * 10, "l2") - 10 * ((1 - g) ** 2 * m + abs(1 - g) * still)) < 1e-5
    hedge = (a + b)[None, None].expand(2, 3, S, S) * 0.1  # half the change in both places, for both examples
    assert abs(score(hedge, gt, "l2") - (score(none, gt, "l2") - m / 2)) < 1e-6
    assert abs(score(hedge, gt, "l1") - score(none, gt, "l1")) < 1e-6


def test_cli_trains_with_it_and_refuses_what_cannot_carry_it(tmp_path):
    from tiny_runs import train_tiny

    r = train_tiny(tmp_path / "bad", "--expr-contrast", "-1")
    assert r.exit_code == 2 and "--expr-contrast -1.0: expected 0 (off) or more" in r.output
    r = train_tiny(tmp_path / "odd", "--expr-contrast", "1", "--n-supervision", "3")
    assert r.exit_code == 2 and "an even number of supervision views" in r.output
    r = train_tiny(tmp_path / "fresh", "--expr-contrast", "1", "--source", "fresh")
    assert r.exit_code == 2 and "needs the synthetic pool" in r.output
    r = train_tiny(tmp_path / "one", "--expr-contrast", "1", "--pool-timesteps", "1")
    assert r.exit_code == 2 and "at least two expressions per pooled subject" in r.output
    r = train_tiny(tmp_path / "norm", "--expr-contrast", "1", "--expr-contrast-norm", "l3")
    assert r.exit_code == 2 and "--expr-contrast-norm l3: expected l1 or l2" in r.output
    assert not any((tmp_path / n).exists() for n in ("bad", "odd", "fresh", "one", "norm"))
    r = train_tiny(tmp_path / "run", "--expr-contrast", "1", "--quiet")
    assert r.exit_code == 0, r.output
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("contrast_l1" in e and e["contrast_l1"] > 0 for e in logged), logged
    r = train_tiny(tmp_path / "run2", "--expr-contrast", "1", "--expr-contrast-norm", "l2", "--quiet")
    assert r.exit_code == 0, r.output
    logged2 = [json.loads(line) for line in (tmp_path / "run2" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("contrast_l1", 0) > 0 for e in logged2) and logged2 != logged
