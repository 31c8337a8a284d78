"""`ModelConfig.decoder_self_layers`: self-attention after the cross-attention, so the expression can act across
tokens and views. The blocks start as the identity, so weights trained without them continue exactly; once
trained, one token's decoded value depends on the others, which a stacked decoder's never does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.cameras import dome
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import load_init_weights


def _inputs(cfg, views=2):
    g = torch.Generator().manual_seed(1)
    H = cfg.image_size
    return (torch.rand(1, views, H, H, 3, generator=g), torch.randn(1, views, H, H, 3, generator=g) * 0.1,
            torch.full((1, views, H, H), 0.9), torch.ones(1, views, H, H), dome(views, size=H))


def _decoded_tokens(model: Avat3rNet, tokens: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    ctx = model.expr(code)
    for blk in model.blocks[model.first_cross:]:
        tokens = blk(tokens, ctx)
    return tokens


def test_weights_without_the_blocks_continue_exactly():
    old = Avat3rNet(preset("tiny")).eval()
    new = Avat3rNet(preset("tiny", decoder_self_layers=2)).eval()
    fresh = load_init_weights(new, old.state_dict(), Path("old.safetensors"))
    assert new.kinds == ["self", "cross", "self", "self"] and not new.tokenwise_decoder
    assert fresh and all(k.startswith(("blocks.2.", "blocks.3.")) for k in fresh)
    imgs, pos, conf, masks, cams = _inputs(new.cfg)
    code = torch.rand(1, 52)
    with torch.no_grad():
        assert torch.equal(old(imgs, pos, conf, masks, cams, code).means,
                           new(imgs, pos, conf, masks, cams, code).means)


def test_trained_blocks_let_tokens_see_each_other():
    torch.manual_seed(0)
    stacked = Avat3rNet(preset("tiny")).eval()
    mixed = Avat3rNet(preset("tiny", decoder_self_layers=1)).eval()
    load_init_weights(mixed, stacked.state_dict(), Path("x.safetensors"))
    with torch.no_grad():
        for p in mixed.blocks[mixed.first_decoder_self:].parameters():  # as after training
            p.normal_(0, 0.1)
        tokens = torch.randn(1, 2 * 8 * 8, mixed.cfg.width)
        nudged = tokens.clone()
        nudged[0, 5] += torch.randn(mixed.cfg.width)  # one token of the first view (not a constant shift,
        # which the blocks' LayerNorm would not see)
        code = torch.rand(1, 52)
        for model, across in ((stacked, False), (mixed, True)):
            a, b = _decoded_tokens(model, tokens, code), _decoded_tokens(model, nudged, code)
            others = torch.ones(a.shape[1], dtype=torch.bool)
            others[5] = False
            assert not torch.allclose(a[0, 5], b[0, 5])
            assert (not torch.allclose(a[0, others], b[0, others], atol=1e-6)) == across


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="decoder_self_layers"):
        preset("tiny", decoder_self_layers=-1)


def test_cli_adds_blocks_to_older_weights_and_drives_the_avatar(tmp_path):
    from tiny_runs import cli, synthetic_capture, tiny_checkpoint, train_tiny

    r = train_tiny(tmp_path / "new", "--set", "decoder_self_layers=1", "--init", tiny_checkpoint(tmp_path),
                   "--ship", tmp_path / "new_ckpt", "--fresh-lr", "10")
    assert r.exit_code == 0, r.output
    assert "new, starting as a no-op: blocks.2.norm1.weight" in r.output
    avatar = tmp_path / "a.safetensors"
    r = cli("reconstruct", synthetic_capture(tmp_path), "--out", avatar, "--checkpoint", tmp_path / "new_ckpt",
            "--device", "cpu", "--quiet", "--refine", "0")  # refinement: tests/test_refine.py
    assert r.exit_code == 0, r.output
    codes = np.zeros((2, 52), np.float32)
    codes[1, 17] = 1.0  # jawOpen
    np.save(tmp_path / "codes.npy", codes)
    r = cli("animate", avatar, "--exp", tmp_path / "codes.npy", "--out", tmp_path / "v.mp4", "--size", "64",
            "--checkpoint", tmp_path / "new_ckpt", "--frames-dir", tmp_path / "frames", "--device", "cpu",
            "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "frames").glob("*.png"))) == 2
