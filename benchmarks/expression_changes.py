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
from eval_expression import parse_seeds, view_renders

from stages.model.checkpoint import load_model


def subject_rows(seed: int, checkpoint: Path | None, model, device: torch.device, workdir: Path,  # noqa: ANN001
                 every: int) -> list[torch.Tensor]:
    def grey(change: torch.Tensor) -> torch.Tensor:
        return (0.5 + 2 * change).clamp(0, 1)

    return [torch.cat([gt_e, p_e, grey(gt_e - gt_0), grey(p_e - p_0)], 1).cpu()
            for p_e, p_0, gt_e, gt_0, _ in view_renders(seed, checkpoint, model, device, workdir, every=every)]


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
