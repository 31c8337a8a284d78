"""benchmarks/fog.py: an untrained network (output head at zero) is the prior-points baseline, whose Gaussians have
opacity sigmoid(1) and a largest scale of 0.8 footprints exactly; fainter Gaussians read as fainter and render
their own photo worse."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.avatar import AvatarDriver
from stages.gaussians import Gaussians
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import save_checkpoint
from stages.reconstruct import reconstruct
from stages.synth import make_synthetic_capture

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fog", ROOT / "benchmarks" / "fog.py")
fog = importlib.util.module_from_spec(_spec)
sys.modules["fog"] = fog  # its dataclass looks its module up while it is being defined
_spec.loader.exec_module(fog)


def test_prior_points_read_as_they_are_built_and_faint_ones_as_fog(tmp_path):
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny")).eval()
    ckpt = save_checkpoint(tmp_path / "untrained.safetensors", model)
    capture = make_synthetic_capture(tmp_path / "cap", 3, size=model.cfg.image_size)
    driver = AvatarDriver(reconstruct(capture, ckpt, "cpu"), model, fast=False)
    codes = fog.input_expressions(capture, model.cfg, 4)
    assert any(c.any() for c in codes)  # the synthetic capture records each input's expression
    with torch.no_grad():
        rows = fog.view_fog(driver, codes, "untrained")
    assert [r.view for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r.opacity == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-4)
        assert r.width == pytest.approx(0.8, abs=1e-3)
        assert r.self_psnr > 15  # pixel-coloured points on their own rays redraw the photo
        assert 0 <= r.spread_mm < 100
    plain = driver.gaussians

    def faint(code):  # the same Gaussians at a tenth of their opacity
        g = plain(code)
        o = torch.sigmoid(g.opacity_logits) * 0.1
        return Gaussians(g.means, g.quats, g.log_scales, torch.log(o / (1 - o)), g.colors)

    driver.gaussians = faint
    with torch.no_grad():
        foggy = fog.view_fog(driver, codes, "faint")
    for r, f in zip(rows, foggy, strict=True):
        assert f.opacity == pytest.approx(r.opacity * 0.1, rel=1e-3)
        assert f.self_psnr < r.self_psnr - 3
    text = fog.table(rows + foggy)
    assert "| **untrained** | mean | 0.731 | 0.80 |" in text and "| **all** | mean |" in text
    assert np.isfinite([r.self_psnr for r in rows]).all()
