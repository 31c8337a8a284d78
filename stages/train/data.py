"""Training batches: 4 input views at different timesteps + 8 supervision views at one target expression,
with the positional prior attached, from the on-the-fly synthetic heads (or a dataset on disk)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.capture import Capture


@dataclass
class Batch:
    images: Tensor  # (B, V, H, W, 3)
    masks: Tensor  # (B, V, H, W)
    cameras: Cameras  # B*V input cameras
    pos: Tensor  # (B, V, H, W, 3)
    conf: Tensor  # (B, V, H, W)
    codes: Tensor  # (B, E) target expressions
    target_rgb: Tensor  # (B, T, H, W, 3), straight (not premultiplied) colour
    target_alpha: Tensor  # (B, T, H, W)
    target_cameras: Cameras  # B*T


def gt_prior(depth: Tensor, alpha: Tensor, cameras: Cameras, generator: torch.Generator | None = None,
             noise_m: float = 0.002) -> tuple[Tensor, Tensor]:
    """A stand-in for a learned prior: ground-truth depth back-projected, with a little noise."""
    o, d = cameras.rays()
    fwd = cameras.forward_dirs()[:, None, None, :]
    dist = depth / (d * fwd).sum(-1).clamp(min=1e-6)
    pos = o + d * dist[..., None]
    if noise_m > 0:
        noise = torch.randn(pos.shape, generator=generator, device="cpu").to(pos.device) * noise_m
        pos = pos + noise
    conf = ((alpha > 0.5) & (depth > 0)).float()
    return pos * conf[..., None], conf


def builtin_prior(images: Tensor, masks: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """The same built-in multi-view prior the toolkit uses at test time."""
    from stages.priors import compute_priors

    cap = Capture(Path("."), images, masks, cameras)
    pri = compute_priors(cap, backend="builtin", resolution=images.shape[1], device=images.device)
    return pri.pos.to(images.device), pri.conf.to(images.device)


class SynthSource:
    """Synthetic heads drawn on the fly: example i of step s is a pure function of (seed, s, rank, i), so a
    resumed run sees exactly the data it would have seen."""

    def __init__(self, size: int, n_inputs: int, n_supervision: int, n_cameras: int, seed: int,
                 consistent_inputs: bool = False):
        self.size, self.n_inputs, self.n_supervision = size, n_inputs, n_supervision
        self.n_cameras, self.seed, self.consistent = n_cameras, seed, consistent_inputs

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        from stages.synth import sample_training_example

        g = torch.Generator().manual_seed(hash((self.seed, step, rank, index)) % (2**62))
        kwargs = {"consistent_inputs": True} if self.consistent else {}
        return sample_training_example(g, n_inputs=self.n_inputs, n_supervision=self.n_supervision,
                                       size=self.size, device=device, n_cameras=self.n_cameras, **kwargs)


def collate(examples: list[dict], prior: str, generator: torch.Generator | None = None) -> Batch:
    """Stack examples and attach the positional prior of each example's input views."""
    poss, confs = [], []
    for ex in examples:
        if prior == "gt":
            p, c = gt_prior(ex["input_depth"], ex["input_alpha"], ex["input_cameras"], generator)
        else:
            p, c = builtin_prior(ex["input_rgb"], ex["input_alpha"], ex["input_cameras"])
        poss.append(p)
        confs.append(c)
    return Batch(
        images=torch.stack([ex["input_rgb"] for ex in examples]),
        masks=torch.stack([ex["input_alpha"] for ex in examples]),
        cameras=Cameras.cat([ex["input_cameras"] for ex in examples]),
        pos=torch.stack(poss), conf=torch.stack(confs),
        codes=torch.stack([torch.as_tensor(ex["target_expr"]).float() for ex in examples]).to(poss[0].device),
        target_rgb=torch.stack([ex["target_rgb"] for ex in examples]),
        target_alpha=torch.stack([ex["target_alpha"] for ex in examples]),
        target_cameras=Cameras.cat([ex["target_cameras"] for ex in examples]),
    )
