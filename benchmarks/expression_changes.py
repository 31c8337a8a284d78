"""A picture of what the expression code changes (issue 17): per held-out synthetic subject and target view, one
row of ground truth at the target code | the avatar at it | the ground truth's change from neutral | the
avatar's change from neutral (changes drawn as 0.5 + 2 × difference, so grey is no change). The numbers are
benchmarks/eval_expression.py's; this shows where the avatar's change goes.

    python benchmarks/expression_changes.py [--checkpoint C] [--seeds 1000,1001] [--every 2] --out changes.jpg
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from eval_expression import _premultiplied, _render, parse_seeds

from stages.avatar import AvatarDriver
from stages.capture import read_capture
from stages.model.checkpoint import load_model
from stages.reconstruct import reconstruct
from stages.synth import make_synthetic_capture, render_head, sample_identity


def subject_rows(seed: int, checkpoint: Path | None, model, device: torch.device, workdir: Path,  # noqa: ANN001
                 every: int) -> list[torch.Tensor]:
    cap = make_synthetic_capture(workdir / f"s{seed}", seed, size=model.cfg.image_size, device=device)
    identity = sample_identity(np.random.default_rng(int(seed)))  # the first draw, as make_synthetic_capture
    targets = read_capture(cap / "targets")
    driver = AvatarDriver(reconstruct(cap, checkpoint, device, refine=0), model, fast=False)
    neutral = np.zeros(targets.expressions.shape[1], np.float32)
    g_neutral, black = driver.gaussians(neutral), torch.zeros(3, device=device)
    rows = []
    for i in range(0, len(targets), every):
        cam, code = targets.cameras[i].to(device), targets.expressions[i].numpy()
        gt_e = _premultiplied(render_head(identity, code, cam, device=device, depth=False))
        gt_0 = _premultiplied(render_head(identity, neutral, cam, device=device, depth=False))
        with torch.no_grad():
            p_e = _render(driver.gaussians(code), cam, black, None)
            p_0 = _render(g_neutral, cam, black, None)
        rows.append(torch.cat([gt_e, p_e, (0.5 + 2 * (gt_e - gt_0)).clamp(0, 1),
                               (0.5 + 2 * (p_e - p_0)).clamp(0, 1)], 1).cpu())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped one")
    ap.add_argument("--seeds", default="1000,1001")
    ap.add_argument("--every", type=int, default=2, help="every Nth target view")
    ap.add_argument("--width", type=int, default=512, help="width of the picture written")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dev = torch.device(args.device)
    path = Path(args.checkpoint) if args.checkpoint else None
    model, _ = load_model(path, dev)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for s in parse_seeds(args.seeds) for r in subject_rows(s, path, model, dev, Path(tmp), args.every)]
    img = (torch.cat(rows, 0).numpy() * 255).astype(np.uint8)[..., ::-1]
    h = round(img.shape[0] * args.width / img.shape[1])
    cv2.imwrite(args.out, cv2.resize(img, (args.width, h), interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {args.out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
