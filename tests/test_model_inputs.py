"""What reaches the network: the whole foreground's prior geometry (with its confidence), and semantic features
only when the model was built for them."""

from __future__ import annotations

import pytest
import torch

from stages.cameras import dome
from stages.model import Avat3rNet, preset


def _inputs(cfg, views=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.image_size
    imgs = torch.rand(1, views, H, H, 3, generator=g)
    pos = torch.randn(1, views, H, H, 3, generator=g) * 0.1
    conf = torch.full((1, views, H, H), 0.2)  # nothing confirmed by stereo
    conf[..., : H // 2, :] = 0.9
    masks = torch.ones(1, views, H, H)
    masks[..., :, : H // 8] = 0.0  # a background strip
    return imgs, pos, conf, masks, dome(views, size=H)


def test_unconfident_foreground_positions_reach_the_tokens():
    """Pixels below the confidence threshold become no Gaussians, but their positions still inform the tokens:
    moving them must change the identity tokens (it did not when they were zeroed before tokenising)."""
    cfg = preset("tiny")
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    H = cfg.image_size
    moved = pos.clone()
    moved[..., H // 2 :, H // 8 :, :] += 0.05  # the unconfident foreground half only
    with torch.no_grad():
        a = model.encode_identity(imgs, pos, conf, masks, cams).tokens
        b = model.encode_identity(imgs, moved, conf, masks, cams).tokens
    assert not torch.allclose(a, b, atol=1e-6)


def test_background_positions_do_not_reach_the_tokens():
    cfg = preset("tiny")
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    moved = pos.clone()
    moved[..., :, : cfg.image_size // 8, :] += 0.05  # the background strip only
    with torch.no_grad():
        a = model.encode_identity(imgs, pos, conf, masks, cams).tokens
        b = model.encode_identity(imgs, moved, conf, masks, cams).tokens
    assert torch.equal(a, b)


def test_feature_channels_must_match_the_model():
    with_feat = Avat3rNet(preset("tiny", feat_dim=8)).eval()
    without = Avat3rNet(preset("tiny")).eval()
    imgs, pos, conf, masks, cams = _inputs(with_feat.cfg)
    feat = torch.rand(1, 2, 4, 4, 8)
    with torch.no_grad():
        with_feat.encode_identity(imgs, pos, conf, masks, cams, feat)  # the matching case works
        with pytest.raises(ValueError, match="8 semantic feature channels but was given none"):
            with_feat.encode_identity(imgs, pos, conf, masks, cams)
        with pytest.raises(ValueError, match="0 semantic feature channels but was given 8"):
            without.encode_identity(imgs, pos, conf, masks, cams, feat)
        with pytest.raises(ValueError, match="8 semantic feature channels, got 5"):
            with_feat.encode_identity(imgs, pos, conf, masks, cams, torch.rand(1, 2, 4, 4, 5))


def test_training_refuses_feature_channels_it_cannot_feed(tmp_path):
    from stages.errors import BadInput
    from stages.train.config import TrainConfig
    from stages.train.loop import train

    cfg = TrainConfig(out=str(tmp_path / "run"), preset="tiny", model_overrides={"feat_dim": 8}, steps=1,
                      device="cpu", prior="gt", pool_slots=1, pool_timesteps=5, pool_cameras=12)
    with pytest.raises(BadInput, match="feat_dim > 0 needs semantic features"):
        train(cfg, log=lambda m: None, resume=False)
    assert not (tmp_path / "run").exists()


def test_checkpoints_from_before_the_switch_keep_their_token_inputs():
    """A config saved without `token_positions` (the shipped releases) rebuilds the network it was trained as."""
    import json

    from stages.model.config import ModelConfig

    old = json.loads(preset("tiny").to_json())
    del old["token_positions"]
    assert ModelConfig.from_json(json.dumps(old)).token_positions == "confident"
    cfg = preset("tiny", token_positions="confident", conf_threshold=0.5)  # as the first releases were saved
    model = Avat3rNet(cfg).eval()
    imgs, pos, conf, masks, cams = _inputs(cfg)
    moved = pos.clone()
    moved[..., cfg.image_size // 2 :, cfg.image_size // 8 :, :] += 0.05  # unconfident foreground: zeroed
    with torch.no_grad():
        a = model.encode_identity(imgs, pos, conf, masks, cams).tokens
        b = model.encode_identity(imgs, moved, conf, masks, cams).tokens
    assert torch.equal(a, b)


def test_train_refuses_zero_steps_and_a_foreign_ship_folder_before_training(tmp_path):
    from typer.testing import CliRunner

    from avat3r_cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "0"])
    assert res.exit_code == 2 and "--steps must be at least 1" in res.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("x")
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "1",
                              "--ship", str(mine)])
    assert res.exit_code == 2, res.output
    assert not (tmp_path / "run").exists()
    assert (mine / "thesis.txt").read_text() == "x"
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--steps", "1",
                              "--pool-configs", "0"])  # 0 is for video clips alone
    assert res.exit_code == 2 and "--pool-configs 0" in res.output, res.output
    assert not (tmp_path / "run").exists()
