"""Test-time refinement of an avatar (`reconstruct --refine STEPS`): tune its cached identity tokens so that it
renders its own input photos.

The network is feed-forward and trained on heads unlike a real person's capture; rendered from its own input
cameras such an avatar is blurred (self-view PSNR of 9-21 dB on the real cases, benchmarks/fog.py). The avatar
file stores the tokens just before the first cross-attention to the expression, and everything after them is
the network's decoder: optimising those tokens against the inputs, each decoded at the input's own expression,
keeps the avatar drivable by any code and keeps the file format. Nothing but the capture is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.avatar import Avatar
from stages.model import Avat3rNet
from stages.render import render

BACKGROUNDS = ((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.5, 0.5, 0.5))  # cycled: colour and alpha both pay
DEFAULT_LR = 2e-2  # chosen on 2 of the real cases at 20 steps; held at 80 (benchmarks/RESULTS.md, refinement)
# `reconstruct`'s default steps, the same on every device so that a capture gives one avatar wherever it is made:
# 20-160 were scored on an H100 (RESULTS); 80 is best or level on every set and clears ood's +3 dB over the
# nearest input in each category (40 leaves near at +2.77). A step costs 17 ms on an H100, 4.5-8 s on 2 CPU
# cores (6-11 minutes for 80; pass a smaller --refine where that is too long).
DEFAULT_STEPS = 80


def step_size(lr: float | None) -> float:
    """The Adam step size refinement uses: `lr`, or DEFAULT_LR when None (one fallback for refining and for
    recording what was refined)."""
    return DEFAULT_LR if lr is None else lr


def _plain(items: Iterable[int], description: str, total: int) -> Iterator[int]:
    return iter(items)


def refine_avatar(model: Avat3rNet, avatar: Avatar, codes: Tensor, steps: int, lr: float | None = None,
                  log: Callable[[str], None] = lambda msg: None,
                  track: Callable[[Iterable[int], str, int], Iterator[int]] | None = None) -> Avatar:
    """A copy of `avatar` whose tokens were tuned for `steps` Adam steps on L1 (colour over a cycled
    background, plus alpha against the input masks) at the inputs' own cameras; `codes` (V, E) are the inputs'
    expressions; `lr` None is DEFAULT_LR. The network's weights are not changed. `track`, when given, wraps the
    steps (a progress bar)."""
    if steps <= 0:
        return avatar
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    needs_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    V = avatar.images.shape[0]
    images, masks = avatar.images.to(dev), avatar.masks.to(dev)
    cameras = avatar.cameras.to(dev)
    with torch.no_grad():
        state, _ = model.skip_inputs(images[None], avatar.pos[None].to(dev), avatar.conf[None].to(dev),
                                     masks[None], cameras)
    tokens = avatar.tokens.to(dev).clone().requires_grad_(True)
    opt = torch.optim.Adam([tokens], lr=step_size(lr))
    codes = codes.to(dev, torch.float32)
    first = last = float("nan")
    try:
        for step in (track or _plain)(range(steps), "refining the avatar", steps):
            bg = torch.tensor(BACKGROUNDS[step % len(BACKGROUNDS)], device=dev)
            state.tokens = tokens
            maps = model.decode(state.repeat(V), codes)  # avatar v at input v's expression
            loss = images.new_zeros(())
            for v in range(V):
                out = render(maps.gaussians(v), cameras[v], background=bg)
                m = masks[v, ..., None]
                target = images[v] * m + bg * (1 - m)
                loss = loss + F.l1_loss(out.rgb[0], target) + F.l1_loss(out.alpha[0, ..., 0], masks[v])
            opt.zero_grad(set_to_none=True)
            (loss / V).backward()
            opt.step()
            last = loss.item() / V
            first = last if step == 0 else first
    finally:
        for p, g in zip(model.parameters(), needs_grad, strict=True):
            p.requires_grad_(g)
        model.train(was_training)
    log(f"refined the avatar's tokens for {steps} steps: L1 at its input views {first:.4f} -> {last:.4f} "
        "(before the last step)")
    return Avatar(tokens.detach().to(avatar.tokens.dtype).cpu(), avatar.images, avatar.pos, avatar.conf,
                  avatar.masks, avatar.cameras, dict(avatar.meta, refine_steps=str(steps)))
