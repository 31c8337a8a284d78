"""Test-time refinement (`reconstruct --refine`, stages.refine): the tuned tokens redraw the input photos better,
the network is untouched, the result is deterministic and still an ordinary, drivable avatar file."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stages.avatar import Avatar, AvatarDriver, load_avatar
from stages.capture import read_capture
from stages.capture.input_codes import recorded_codes
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import save_checkpoint
from stages.reconstruct import reconstruct
from stages.refine import DEFAULT_STEPS, refine_avatar
from stages.render import render
from stages.synth import make_synthetic_capture
from tests.tiny_runs import cli


def _model(tmp_path):
    """A tiny network whose output head is not at zero (an untrained head gives the tokens no gradient)."""
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny")).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.1)
    return model, save_checkpoint(tmp_path / "tiny.safetensors", model)


def _input_l1(model: Avat3rNet, avatar: Avatar, codes: torch.Tensor) -> float:
    """Mean L1 of the avatar at its own input cameras and expressions against the photos over white."""
    driver = AvatarDriver(avatar, model, fast=False)
    total = 0.0
    with torch.no_grad():
        for v in range(avatar.images.shape[0]):
            out = render(driver.gaussians(codes[v]), avatar.cameras[v], background=(1.0, 1.0, 1.0))
            m = avatar.masks[v, ..., None]
            total += float(F.l1_loss(out.rgb[0], avatar.images[v] * m + (1 - m)))
    return total / avatar.images.shape[0]


def test_refinement_fits_the_inputs_and_leaves_the_network_alone(tmp_path):
    model, ckpt = _model(tmp_path)
    capture = make_synthetic_capture(tmp_path / "cap", 3, size=model.cfg.image_size)
    codes = recorded_codes(read_capture(capture), model.cfg)
    assert codes is not None and codes.abs().sum() > 0  # each input at its own expression
    plain = reconstruct(capture, ckpt, "cpu")
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    logs: list[str] = []
    tuned = refine_avatar(model, plain, codes, 15, lr=0.05, log=logs.append)
    again = refine_avatar(model, plain, codes, 15, lr=0.05)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # restored after tuning
    assert torch.equal(tuned.tokens, again.tokens)  # deterministic
    assert not torch.equal(tuned.tokens, plain.tokens)
    before, after = _input_l1(model, plain, codes), _input_l1(model, tuned, codes)
    assert after < 0.97 * before, (before, after)
    assert tuned.meta["refine_steps"] == "15" and "refined the avatar's tokens for 15 steps" in logs[0]
    assert refine_avatar(model, plain, codes, 0) is plain


def test_cli_reconstruct_refine_writes_a_drivable_avatar(tmp_path):
    _, ckpt = _model(tmp_path)
    capture = make_synthetic_capture(tmp_path / "cap", 4, size=32)
    out = tmp_path / "avatar.safetensors"
    r = cli("reconstruct", capture, "--out", out, "--checkpoint", ckpt, "--refine", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert load_avatar(out).meta["refine_steps"] == "2"
    r = cli("render", out, "--cameras", capture / "transforms.json", "--out", tmp_path / "frames", "--checkpoint",
            ckpt, "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "frames").glob("*.png"))) > 0
    default = tmp_path / "default.safetensors"  # refinement is on unless asked off
    assert cli("reconstruct", capture, "--out", default, "--checkpoint", ckpt, "--device", "cpu").exit_code == 0
    assert load_avatar(default).meta["refine_steps"] == str(DEFAULT_STEPS)
    plain = tmp_path / "plain.safetensors"
    r = cli("reconstruct", capture, "--out", plain, "--checkpoint", ckpt, "--device", "cpu", "--refine", "0")
    assert r.exit_code == 0 and "refine_steps" not in load_avatar(plain).meta
    bad = cli("reconstruct", capture, "--out", tmp_path / "bad.safetensors", "--checkpoint", ckpt, "--refine", "-1")
    assert bad.exit_code == 2 and not (tmp_path / "bad.safetensors").exists()
