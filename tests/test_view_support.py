"""Shared helpers of the view tests (no tests here): a tiny avatar made in about a second, without the priors
pass, so server and browser tests stay quick."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stages.avatar import create_avatar, save_avatar
from stages.cameras import dome
from stages.model import Avat3rNet, preset
from stages.model.checkpoint import checkpoint_sha256, save_checkpoint


def tiny_avatar(root: Path) -> Path:
    """A textured sphere (radius 0.1 m at the origin) seen by 4 cameras, encoded by a tiny random network whose
    expression path is non-trivial. The positional prior is the exact ray/sphere hit."""
    torch.manual_seed(0)
    model = Avat3rNet(preset("tiny"))
    with torch.no_grad():  # a strong expression path, so a jawOpen change shows in the pictures
        for p in model.head.parameters():
            p.normal_(0, 1.0)
        for p in model.expr.parameters():
            p.normal_(0, 0.5)
        for block, kind in zip(model.blocks, model.kinds, strict=True):
            if kind == "cross":
                for p in block.parameters():
                    if p.dim() > 1:
                        p.normal_(0, 1.0)
    ckpt = save_checkpoint(root / "tiny.safetensors", model)
    size = model.cfg.image_size
    cams = dome(4, size=size, azimuth_span_deg=120, elevation_range_deg=(-10, 20), focal=size / 0.34)
    o, d = cams.rays()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.1**2)
    hit = disc > 0
    p = o + d * (-b - disc.clamp(min=0).sqrt())[..., None]
    tex = 0.5 + 0.5 * torch.sin(40 * p[..., :1]) * torch.cos(30 * p[..., 1:2])
    rgb = torch.cat([tex, 0.6 * torch.ones_like(tex), 1 - tex], -1) * hit[..., None]
    meta = {"path": str(ckpt), "sha256": checkpoint_sha256(ckpt)}
    avatar = create_avatar(model, meta, rgb, hit.float(), cams, p * hit[..., None], hit.float())
    out = root / "avatar.safetensors"
    save_avatar(out, avatar)
    return out


def jaw_code(value: float = 1.0) -> np.ndarray:
    code = np.zeros(52, np.float32)
    code[17] = value  # jawOpen
    return code
