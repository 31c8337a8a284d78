"""Can the network express one subject's expressions at all? A capacity diagnostic for issue 17, not a test
figure: one synthetic subject's avatar is fitted to its own ground truth at many (camera, expression) pairs,
then scored with the expression benchmark's figures (benchmarks/eval_expression.py) at the target views and
codes, which the fit never sees.

If the fit reaches a high response and gain, what the network lacks is the training signal, not the means; if
it does not, the decoder's expression path is the limit. `--mode tokens` tunes the avatar's cached tokens (as
`reconstruct --refine` does); `--mode decoder` tunes the tokens and every weight after them. `--contrast l1|l2`
draws the pairs as two codes at one camera and adds train's expression-contrast term on their change
(stages.train.loop.change_error, weight 1, that norm): which norm lets the change grow?

    python benchmarks/expression_capacity.py --checkpoint C --seed 3000 --mode decoder --steps 60 [--contrast l2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from eval_expression import change_sums, driver_renders, summarise, truth

from stages.avatar import Avatar, AvatarDriver
from stages.capture import read_capture
from stages.model import Avat3rNet
from stages.model.checkpoint import load_init_weights, load_model
from stages.reconstruct import reconstruct
from stages.render import render
from stages.synth import make_synthetic_capture, sample_identity
from stages.synth.expression import sample_expression
from stages.train.loop import change_error

FIT_CODES = 16  # fresh codes of the subject's generator, never the target codes
PAIRS_PER_STEP = 4
REGION_WEIGHT = 2.0  # the region is ~1% of the image: without extra weight the fit ignores it


def fit(model, avatar: Avatar, identity, cams: list, mode: str, steps: int, seed: int,  # noqa: ANN001
        contrast: str | None = None) -> Avatar:
    """The avatar (and, for mode decoder, the model in place) fitted to the truth at FIT_CODES codes x cams;
    with `contrast`, the pairs come as two codes at one camera and their change is held to the truth's too."""
    rng = np.random.default_rng(seed + 77)
    codes = [sample_expression(rng) for _ in range(FIT_CODES)]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(mode == "decoder")  # only the decoder's weights receive gradients: decode() alone runs
    state, _ = model.skip_inputs(avatar.images[None], avatar.pos[None], avatar.conf[None], avatar.masks[None],
                                 avatar.cameras)
    tokens = avatar.tokens.clone().float().requires_grad_(True)
    groups = [{"params": [tokens], "lr": 2e-2}]
    if mode == "decoder":  # an added block starts as a no-op; it gets 3x the step, as `train --fresh-lr 3` gives it
        fresh = {id(p) for p in model.fresh_parameters().values()}
        groups.append({"params": [p for p in model.parameters() if id(p) not in fresh], "lr": 1e-4})
        groups.append({"params": [p for p in model.parameters() if id(p) in fresh], "lr": 3e-4})
    opt = torch.optim.Adam(groups)
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    black = torch.zeros(3)
    t0 = time.time()
    for step in range(steps):
        pairs = [(int(rng.integers(FIT_CODES)), int(rng.integers(len(cams)))) for _ in range(PAIRS_PER_STEP)]
        if contrast:  # (a, k), (b, k), (c, m), (d, m): the same camera twice in a row
            pairs = [(c, pairs[j - j % 2][1]) for j, (c, _) in enumerate(pairs)]
        state.tokens = tokens
        maps = model.decode(state.repeat(len(pairs)),
                            torch.tensor(np.stack([codes[c] for c, _ in pairs]), dtype=torch.float32))
        loss = torch.zeros(())
        imgs = []
        for j, (c, k) in enumerate(pairs):
            if (c, k) not in cache:
                with torch.no_grad():
                    gt_e, _, region = truth(identity, codes[c], cams[k], torch.device("cpu"))
                cache[(c, k)] = (gt_e, region)
            gt_e, region = cache[(c, k)]
            img = render(maps.gaussians(j), cams[k], background=black).rgb[0]
            loss = loss + F.l1_loss(img, gt_e) + REGION_WEIGHT * ((img - gt_e).abs() * region).mean()
            imgs.append((img, gt_e, region))
        if contrast:  # 2 per pair: over 4 images and 2 pairs the mean below weighs it 1, as train's W = 1
            for (p1, g1, r1), (p2, g2, r2) in zip(imgs[::2], imgs[1::2], strict=True):
                loss = loss + 2 * change_error(p1 - p2, g1 - g2, torch.maximum(r1, r2), contrast)
        opt.zero_grad()
        (loss / len(pairs)).backward()
        opt.step()
        if step % 10 == 0:
            print(f"step {step}: loss {float(loss.detach()) / len(pairs):.4f} ({time.time() - t0:.0f} s)", flush=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return Avatar(tokens.detach().to(avatar.tokens.dtype), avatar.images, avatar.pos, avatar.conf, avatar.masks,
                  avatar.cameras, avatar.meta)


def score(model, avatar: Avatar, identity, targets) -> dict:  # noqa: ANN001
    """eval_expression's figures for one avatar at the capture's target views and codes."""
    sums: dict[str, float] = {}
    for view in driver_renders(AvatarDriver(avatar, model, fast=False), identity, targets, torch.device("cpu")):
        for k, v in change_sums(*view).items():
            sums[k] = sums.get(k, 0.0) + v
    return summarise(sums)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a checkpoint (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=3000, help="the subject (keep it off the benchmark's 1000-1007)")
    ap.add_argument("--mode", choices=("tokens", "decoder"), default="tokens")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--contrast", choices=("l1", "l2"), default=None,
                    help="pairs as two codes at one camera, their change held to the truth's with this norm")
    ap.add_argument("--decoder-self-layers", type=int, default=None,
                    help="add self-attention blocks after the cross-attention (starting as a no-op) before the fit")
    args = ap.parse_args()
    torch.manual_seed(0)
    path = Path(args.checkpoint) if args.checkpoint else None
    model, _ = load_model(path, torch.device("cpu"))
    if args.decoder_self_layers is not None:  # the avatar's tokens are the same: only the decoder gains blocks
        model.cfg.decoder_self_layers = args.decoder_self_layers
        grown = Avat3rNet(model.cfg)
        load_init_weights(grown, model.state_dict(), path or Path("shipped"))
        model = grown.eval()
    with tempfile.TemporaryDirectory() as tmp:
        cap = make_synthetic_capture(Path(tmp) / "subject", args.seed, size=model.cfg.image_size,
                                     device=torch.device("cpu"))
        identity = sample_identity(np.random.default_rng(args.seed))  # the first draw, as make_synthetic_capture
        targets = read_capture(cap / "targets")
        avatar = reconstruct(cap, path, torch.device("cpu"), refine=0)
        cams = [targets.cameras[i] for i in range(len(targets))]
        fitted = fit(model, avatar, identity, cams, args.mode, args.steps, args.seed, args.contrast)
        s = score(model, fitted, identity, targets)
    what = args.mode + (f" + contrast {args.contrast}" if args.contrast else "")
    print(f"| {what} | {args.steps} | {s['response']:.3f} | {s['gain']:.2f} | {100 * s['outside']:.0f}% | "
          f"{s['psnr_region_true']:.2f} / {s['psnr_region_neutral']:.2f} |")


if __name__ == "__main__":
    main()
