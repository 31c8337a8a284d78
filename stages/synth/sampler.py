"""On-the-fly training examples: an identity, a studio, inputs at different moments, targets at one moment.

This mirrors the paper's sampling on Ava256: 4 inputs at random timesteps (so at different expressions) from
views chosen by k-farthest viewpoint sampling, and 8 supervision views at one target expression. Everything
is drawn from the caller's torch.Generator, so a training run is reproducible and never limited by disk.
"""

from __future__ import annotations

import numpy as np
import torch

from stages.synth.expression import sample_expression
from stages.synth.identity import HeadIdentity, sample_identity
from stages.synth.render import render_head
from stages.synth.studio import farthest_views, studio_cameras


def sample_training_example(generator: torch.Generator, n_inputs: int = 4, n_supervision: int = 8,
                            size: int = 256, device: torch.device | str = "cpu", n_cameras: int = 32,
                            identity: HeadIdentity | None = None, neutral_prob: float = 0.1) -> dict:
    """One training example (tensors on `device`).

    Returns input_rgb (n_inputs,H,W,3), input_alpha (n_inputs,H,W), input_depth (n_inputs,H,W), input_cameras,
    input_expr (n_inputs,52), target_rgb (n_supervision,H,W,3), target_alpha, target_depth, target_cameras,
    target_expr (52,), and the identity. Pass `identity` to reuse a person (a cached build renders faster)."""
    identity = identity if identity is not None else sample_identity(generator)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    cams = studio_cameras(n_cameras, size, seed=int(rng.integers(0, 2**31 - 1)))
    inputs = farthest_views(cams.forward_dirs(), n_inputs, generator)
    rest = [i for i in range(len(cams)) if i not in inputs]
    order = torch.randperm(len(rest), generator=generator).tolist()
    targets = [rest[i] for i in order[:n_supervision]]
    if len(targets) < n_supervision:  # a small studio: reuse input views for supervision
        extra = torch.randint(0, len(cams), (n_supervision - len(targets),), generator=generator).tolist()
        targets += extra
    in_expr = np.stack([sample_expression(rng, neutral_prob) for _ in range(n_inputs)])
    tgt_expr = sample_expression(rng, neutral_prob)
    rgb, alpha, depth = [], [], []
    for k, cam in enumerate(inputs):
        out = render_head(identity, in_expr[k], cams[cam], device=device)
        rgb.append(out["rgb"])
        alpha.append(out["alpha"])
        depth.append(out["depth"])
    tcams = cams[targets]
    tout = render_head(identity, tgt_expr, tcams, device=device)
    dev = torch.device(device)
    return {
        "input_rgb": torch.cat(rgb), "input_alpha": torch.cat(alpha), "input_depth": torch.cat(depth),
        "input_cameras": cams[inputs].to(dev), "input_expr": torch.from_numpy(in_expr).to(dev),
        "target_rgb": tout["rgb"], "target_alpha": tout["alpha"], "target_depth": tout["depth"],
        "target_cameras": tcams.to(dev), "target_expr": torch.from_numpy(tgt_expr).to(dev),
        "identity": identity,
    }
