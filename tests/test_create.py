"""Avatar creation on device tensors (`stages.create`) and the GPU fast paths (bf16 + CUDA graphs) of creation
and driving: the same results as the plain steps, and graphs that replay new inputs, not the recorded ones."""

from __future__ import annotations

import pytest
import torch

from stages.avatar import AvatarDriver, load_avatar, save_avatar
from stages.create import AvatarCreator
from stages.model import Avat3rNet, preset
from stages.priors.builtin import builtin_priors
from stages.priors.testscene import scene_capture


def _model(size: int = 64, device: str = "cpu") -> Avat3rNet:
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny", image_size=size)).eval().to(device)
    torch.nn.init.normal_(model.head.weight, std=0.05)
    return model


def test_creator_equals_priors_then_encoder(tmp_path):
    cap, _ = scene_capture(4, 64, seed=1)
    model = _model()
    avatar = AvatarCreator(model, {"path": "ck", "sha256": "abc"})(cap.images, cap.masks, cap.cameras)
    pos, conf, _ = builtin_priors(cap.images, cap.masks, cap.cameras)
    assert torch.equal(avatar.pos, pos) and torch.equal(avatar.conf, conf)
    with torch.no_grad():
        state = model.encode_identity(cap.images[None], pos[None], conf[None], cap.masks[None], cap.cameras)
    assert torch.allclose(avatar.tokens, state.tokens, atol=1e-6)
    assert avatar.meta["checkpoint_sha256"] == "abc" and avatar.meta["views"] == "4"
    save_avatar(tmp_path / "a.safetensors", avatar)  # the created avatar is an ordinary one
    loaded = load_avatar(tmp_path / "a.safetensors")
    g = AvatarDriver(loaded, model).gaussians(torch.zeros(52))
    assert len(g) == int(((conf >= model.cfg.conf_threshold) & (cap.masks > 0.5)).sum())


def test_creator_rejects_wrong_shapes():
    cap, _ = scene_capture(4, 64)
    creator = AvatarCreator(_model())
    with pytest.raises(ValueError, match="need V images"):
        creator(cap.images[:3], cap.masks, cap.cameras)
    small, _ = scene_capture(4, 32)
    with pytest.raises(ValueError, match="need V images"):
        creator(small.images, small.masks, small.cameras)
    with pytest.raises(ValueError, match="need V images"):  # cameras of another image size
        creator(cap.images, cap.masks, small.cameras)
    with pytest.raises(ValueError, match="semantic features"):
        AvatarCreator(Avat3rNet(preset("tiny", feat_dim=8)))


@pytest.mark.gpu
def test_graphed_creation_and_driving_match_eager_bf16():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = _model(128, "cuda")
    graphed, eager = AvatarCreator(model), AvatarCreator(model, graph=False)
    for seed in (1, 2):  # the second capture must come out of the recorded graph with its own inputs
        cap, _ = scene_capture(4, 128, seed=seed)
        a = graphed(cap.images.cuda(), cap.masks.cuda(), cap.cameras.to("cuda"))
        b = eager(cap.images.cuda(), cap.masks.cuda(), cap.cameras.to("cuda"))
        assert graphed.graphed(4)  # recorded, not fallen back to eager
        assert torch.allclose(a.pos, b.pos, atol=1e-5) and torch.allclose(a.conf, b.conf, atol=1e-5)
        assert torch.allclose(a.tokens, b.tokens, atol=1e-3)
    fast, slow = AvatarDriver(a, model), AvatarDriver(a, model, graph=False)
    codes = torch.rand(3, 52, generator=torch.Generator().manual_seed(0))
    first = fast.gaussians(codes[0])
    for code in codes:
        g, h = fast.gaussians(code), slow.gaussians(code)
        for name in ("means", "colors", "opacity_logits"):
            assert torch.allclose(getattr(g, name), getattr(h, name), atol=1e-4), name
    assert fast.graphed and not slow.graphed
    # results are copies: later frames did not overwrite the first one
    assert torch.allclose(first.colors, slow.gaussians(codes[0]).colors, atol=1e-4)


def test_creator_matches_reconstruct_on_the_example_capture(tmp_path):
    """The in-process path of the README (shipped model, example capture) gives the avatar `reconstruct` makes."""
    import shutil

    from stages.capture import read_capture
    from stages.model.checkpoint import load_model
    from stages.reconstruct import reconstruct

    shutil.copytree("examples/capture", tmp_path / "cap")  # reconstruct caches its priors in the capture
    model, meta = load_model(None, "cpu")
    cap = read_capture(tmp_path / "cap").resized(model.cfg.image_size)
    avatar = AvatarCreator(model, meta)(cap.images, cap.masks, cap.cameras)
    stats: dict = {}
    reference = reconstruct(tmp_path / "cap", stats=stats)
    assert torch.allclose(avatar.pos, reference.pos, atol=1e-5)
    assert torch.allclose(avatar.tokens, reference.tokens, atol=1e-4)
    assert avatar.meta == reference.meta
    # the count reconstruct reports is the number of Gaussians the avatar really has, at the model's threshold
    assert len(AvatarDriver(avatar, model).gaussians(torch.zeros(model.cfg.expr_dim))) == stats["gaussians"] > 10_000
