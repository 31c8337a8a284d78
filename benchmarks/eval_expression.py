"""Does the model follow the expression code? Scores held-out synthetic subjects on the pixels that the target
expression changes, which whole-image PSNR hides (they are a few percent of the image).

For each test subject (seeds from `make_synthetic_capture`, never seen in training) and each target view at a
target expression e, the ground truth is rendered at e and at neutral; the region is where they differ. The
avatar is rendered with the true code e and with the neutral code. Reported per checkpoint:

- `psnr_region(true)` vs `psnr_region(neutral)`: a model that uses the code scores higher with the true one;
- `response`: the cosine between the model's change (render(e) − render(neutral)) and the ground truth's
  change (GT(e) − GT(neutral)) over the region; 0 means the code does nothing, 1 a perfect direction;
- `gain`: the norm of the model's change over the ground truth's, in the region;
- `outside`: the share of the model's change (its squared norm over the whole image) that falls outside the
  region, where the code should move nothing (hair, silhouette, neck): 0 for a change only where it belongs;
  the ground truth's own share (changes below the region's threshold) is printed beside it.

    python benchmarks/eval_expression.py [--checkpoint C ...] [--seeds 1000-1007] [--json out.json] [--photo-detail]
                                         [--refine STEPS] [--codes video:CACHE|CODES.npy [--codes-split test]]

`--codes` dresses the targets in expression codes a face tracker gave real frames (`stages.synth.tracked_codes`:
dense, a dozen channels at once, where the generator's own are 1–4 actions) instead of the generator's; the
inputs, cameras and identities stay, so the two runs differ only in the targets' codes. Target i of subject s
wears a row drawn by a generator seeded with s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from stages.avatar import AvatarDriver
from stages.capture import read_capture
from stages.metrics import psnr, ssim
from stages.model.checkpoint import load_model
from stages.reconstruct import reconstruct
from stages.render.photo_detail import InputPhotos, render_sharpened
from stages.synth import make_synthetic_capture, render_head, sample_identity
from stages.synth.tracked_codes import active_channels, tracked_codes
from stages.train.data import expression_region


def _premultiplied(out: dict) -> torch.Tensor:
    return (out["rgb"] * out["alpha"][..., None])[0].float()


def _render(g, cam, black: torch.Tensor, photos: InputPhotos | None) -> torch.Tensor:  # noqa: ANN001
    """The avatar's image over black, sharpened with its nearest input photo when `photos` are given."""
    rgb, _ = render_sharpened(g, cam, black, photos)
    return rgb.clamp(0, 1)


def change_sums(p_e: torch.Tensor, p_0: torch.Tensor, gt_e: torch.Tensor, gt_0: torch.Tensor,
                region: torch.Tensor) -> dict:
    """The sums one view adds to a subject's scores: renders at the true code (p_e) and at neutral (p_0), the
    ground truth at both, (H, W, 1) region where the expression changes the ground truth. `pred_sq_all` is the
    model's change over the whole image: what of it falls outside the region moves what the code should not."""
    d_pred, d_gt = (p_e - p_0) * region, (gt_e - gt_0) * region
    return {"se_true": float((((p_e - gt_e) ** 2) * region).sum()),
            "se_neutral": float((((p_0 - gt_e) ** 2) * region).sum()), "n": float(region.sum() * 3),
            "dot": float((d_pred * d_gt).sum()), "pred_sq": float((d_pred**2).sum()),
            "gt_sq": float((d_gt**2).sum()), "pred_sq_all": float(((p_e - p_0) ** 2).sum()),
            "gt_sq_all": float(((gt_e - gt_0) ** 2).sum())}


def summarise(sums: dict) -> dict:
    """response (cosine of the model's change with the truth's, inside the region), gain (their norms' ratio),
    outside (the share of the model's change that falls outside the region), region PSNRs."""
    n = max(sums["n"], 1.0)
    return {"psnr_region_true": -10 * np.log10(max(sums["se_true"] / n, 1e-10)),
            "psnr_region_neutral": -10 * np.log10(max(sums["se_neutral"] / n, 1e-10)),
            "response": sums["dot"] / max(np.sqrt(sums["pred_sq"] * sums["gt_sq"]), 1e-12),
            "gain": np.sqrt(sums["pred_sq"] / max(sums["gt_sq"], 1e-12)),
            "outside": 1.0 - sums["pred_sq"] / max(sums["pred_sq_all"], 1e-12),
            "truth_outside": 1.0 - sums["gt_sq"] / max(sums["gt_sq_all"], 1e-12)}


def truth(identity, code: np.ndarray, cam, device: torch.device):  # noqa: ANN001
    """The ground truth at `code` and at neutral (premultiplied, over black) and the (H, W, 1) region where they
    differ: the same region the training loss weights (stages.train.data.expression_region)."""
    out_e = render_head(identity, code, cam, device=device, depth=False)
    out_0 = render_head(identity, np.zeros_like(code), cam, device=device, depth=False)
    region = expression_region(torch.stack([out_e["rgb"], out_0["rgb"]]),
                               torch.stack([out_e["alpha"], out_0["alpha"]]), 0)[0, ..., None]
    return _premultiplied(out_e), _premultiplied(out_0), region


def driver_renders(driver: AvatarDriver, identity, targets, device: torch.device,  # noqa: ANN001
                   photos: InputPhotos | None = None, every: int = 1):
    """Per target view (every `every`-th) of a capture's targets: the avatar at the true code and at neutral, and
    `truth` at that view. benchmarks/expression_capacity.py scores its fitted avatars through it."""
    black = torch.zeros(3, device=device)
    g_neutral = driver.gaussians(np.zeros(targets.expressions.shape[1], np.float32))
    for i in range(0, len(targets), every):
        cam = targets.cameras[i].to(device)
        code = targets.expressions[i].numpy()
        gt_e, gt_0, region = truth(identity, code, cam, device)
        with torch.no_grad():
            p_e = _render(driver.gaussians(code), cam, black, photos)
            p_0 = _render(g_neutral, cam, black, photos)
        yield p_e, p_0, gt_e, gt_0, region


def view_renders(seed: int, checkpoint: Path | None, model, device: torch.device, workdir: Path,  # noqa: ANN001
                 photo: bool = False, refine: int = 0, every: int = 1, codes: np.ndarray | None = None):
    """`driver_renders` of held-out subject `seed`'s avatar, made as `reconstruct` makes it. What this file
    scores and benchmarks/expression_changes.py draws. `codes` (N, 52): the targets wear rows of it instead."""
    cap = make_synthetic_capture(workdir / f"s{seed}", seed, size=model.cfg.image_size, device=device)
    identity = sample_identity(np.random.default_rng(int(seed)))  # the first draw, as make_synthetic_capture
    targets = read_capture(cap / "targets")
    if codes is not None:
        rows = np.random.default_rng(int(seed)).integers(0, len(codes), len(targets))
        targets.expressions = torch.from_numpy(codes[rows])
    avatar = reconstruct(cap, checkpoint, device, refine=refine)  # refine: as `reconstruct --refine` does
    driver = AvatarDriver(avatar, model, fast=False)  # float32 scores
    photos = InputPhotos.of(driver.avatar, device) if photo else None
    yield from driver_renders(driver, identity, targets, device, photos, every)


def score_subject(seed: int, checkpoint: Path | None, model, device: torch.device, workdir: Path,
                  photo: bool = False, refine: int = 0, codes: np.ndarray | None = None) -> dict:
    sums: dict[str, float] = {}
    whole = {"psnr": [], "ssim": []}
    for p_e, p_0, gt_e, gt_0, region in view_renders(seed, checkpoint, model, device, workdir, photo, refine,
                                                     codes=codes):
        a, b = p_e.permute(2, 0, 1)[None], gt_e.permute(2, 0, 1)[None]
        whole["psnr"].append(float(psnr(a, b).mean()))
        whole["ssim"].append(float(ssim(a, b).mean()))
        for k, v in change_sums(p_e, p_0, gt_e, gt_0, region).items():
            sums[k] = sums.get(k, 0.0) + v
    return {"seed": seed, "psnr": float(np.mean(whole["psnr"])), "ssim": float(np.mean(whole["ssim"])),
            "region_fraction": max(sums["n"], 1.0) / (3 * len(whole["psnr"]) * model.cfg.image_size**2),
            **summarise(sums)}


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="*", default=[None], help="checkpoints (default: the shipped one)")
    ap.add_argument("--seeds", default="1000-1007")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default="")
    ap.add_argument("--photo-detail", action="store_true", help="render as `render --photo-detail` does")
    ap.add_argument("--refine", type=int, default=0, help="build avatars as `reconstruct --refine STEPS` does")
    ap.add_argument("--codes", default="", help="targets wear tracked real codes: video:CACHE or CODES.npy")
    ap.add_argument("--codes-split", default="test", help="the cache's split whose clips' codes are worn")
    args = ap.parse_args()
    dev = torch.device(args.device)
    codes = tracked_codes(args.codes, args.codes_split) if args.codes else None
    if codes is not None:
        print(f"targets wear {len(codes)} tracked codes of {args.codes} ({args.codes_split}; "
              f"{active_channels(codes):.1f} channels above 0.1 a code)")
    report = {}
    print("| checkpoint | PSNR | SSIM | PSNR region, true code | PSNR region, neutral code | response | gain | "
          "region % | change outside the region %: avatar / truth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ckpt in args.checkpoint:
        path = Path(ckpt) if ckpt else None
        model, meta = load_model(path, dev)
        with tempfile.TemporaryDirectory() as tmp:
            rows = [score_subject(s, path, model, dev, Path(tmp), args.photo_detail, args.refine, codes)
                    for s in parse_seeds(args.seeds)]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seed"}
        report[str(ckpt or "shipped")] = {"subjects": rows, "mean": mean, "steps": meta.get("trained_steps")}
        m = mean
        print(f"| {ckpt or 'shipped'} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['psnr_region_true']:.2f} | "
              f"{m['psnr_region_neutral']:.2f} | {m['response']:.3f} | {m['gain']:.2f} | "
              f"{100 * m['region_fraction']:.1f} | {100 * m['outside']:.0f} / {100 * m['truth_outside']:.0f} |",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
