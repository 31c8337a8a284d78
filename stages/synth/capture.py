"""Synthetic captures: a capture folder of one synthetic person (SPEC section 2) plus held-out targets.

The inputs are what a user would supply (a few photos from different sides, the face moving between shots),
and `targets/` holds other views at other expressions with their codes, for checking a reconstruction.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras, frames_from_cameras, write_transforms
from stages.capture import write_capture
from stages.errors import BadInput
from stages.io import atomic_dir
from stages.synth.expression import sample_expression
from stages.synth.identity import HeadIdentity, sample_identity
from stages.synth.io import to_rgba8, write_png
from stages.synth.render import render_head
from stages.synth.studio import capture_cameras, studio_cameras

DEFAULT_SYNTHETIC_RES = 256  # `prepare --synthetic`'s default image size


def distinct_expressions(rng: np.random.Generator, n: int, neutral_first: bool = False) -> np.ndarray:
    """n random expressions, pairwise different (no two neutral)."""
    out: list[np.ndarray] = []
    while len(out) < n:
        e = np.zeros(52, np.float32) if (neutral_first and not out) else sample_expression(rng, neutral_prob=0.0)
        if all(np.abs(e - o).max() > 0.1 for o in out):
            out.append(e)
    return np.stack(out)


def render_views(identity: HeadIdentity, expressions: np.ndarray, cameras: Cameras,
                 device: torch.device | str = "cpu") -> list[np.ndarray]:
    """One RGBA uint8 image per (expression i, camera i)."""
    images = []
    for i in range(len(cameras)):
        out = render_head(identity, expressions[i], cameras[i], device=device, depth=False)
        images.append(to_rgba8(out["rgb"][0], out["alpha"][0]))
    return images


def make_synthetic_capture(out: Path, seed: int, size: int = 256, n_inputs: int = 4, n_targets: int = 8,
                           device: torch.device | str = "cpu") -> Path:
    """Write a capture folder of one synthetic identity to `out`.

    Inputs: n_inputs views spread over about ±55° of azimuth, each at a different random expression, as RGBA
    PNGs with per-frame "expression" and expression_space "arkit52" (via stages.capture.write_capture).
    Targets (out/targets/): n_targets studio views at further random expressions, with their codes."""
    out = Path(out)
    rng = np.random.default_rng(int(seed))
    gen = torch.Generator().manual_seed(int(seed))
    identity = sample_identity(rng)
    cams = capture_cameras(n_inputs, size, gen)
    exprs = distinct_expressions(rng, n_inputs)
    images = np.stack(render_views(identity, exprs, cams, device))
    meta = {"synthetic": {"seed": int(seed), "generator": "stages.synth", "identity": asdict(identity)}}
    write_capture(out, images.astype(np.float32) / 255.0, None, cams, expressions=exprs,
                  expression_space="arkit52", meta=meta)
    if n_targets > 0:
        dome = studio_cameras(max(16, n_targets * 2), size, seed=int(seed))
        pick = torch.randperm(len(dome), generator=gen)[:n_targets]
        tcams = dome[pick]
        texprs = distinct_expressions(rng, n_targets)
        timgs = render_views(identity, texprs, tcams, device)
        with atomic_dir(out / "targets") as tmp:
            (tmp / "images").mkdir()
            names = [f"{i:03d}" for i in range(n_targets)]
            for name, img in zip(names, timgs, strict=True):
                write_png(tmp / "images" / f"{name}.png", img)
            extras = [{"expression": [round(float(v), 6) for v in e]} for e in texprs]
            frames = frames_from_cameras(tcams, [f"images/{n}.png" for n in names], extras)
            write_transforms(tmp / "transforms.json", frames, {"expression_space": "arkit52",
                                                               "synthetic": {"seed": int(seed)}})
    return out


def prepare_synthetic(out: str | Path, seed: int, res: int = DEFAULT_SYNTHETIC_RES) -> Path:
    """`avat3r prepare --synthetic`: a synthetic capture (4 inputs at different expressions and views) plus
    `targets/` for checking. It lives here, not in stages.capture, so that capture never imports synth."""
    if not 8 <= res <= 4096:
        raise BadInput(f"--res must be between 8 and 4096, got {res}")
    return make_synthetic_capture(Path(out), seed, res)
