"""Evaluation on held-out subjects: 4 inputs at their own expressions, then target views at other
expressions, scored with PSNR / SSIM (/ LPIPS) against two no-learning baselines:

- `nearest view`: the input photo whose camera looks most like the target's, shown as it is;
- `prior points`: the positional prior's points coloured by their input pixels, splatted as Gaussians of
  one pixel's footprint (the untrained network with its skips is exactly this).

Synthetic test subjects are drawn from seeds through `make_synthetic_capture`; their identities are sampled
from a separate seed stream from training, so they are subjects the model never saw."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stages.avatar import AvatarDriver
from stages.capture import Capture, read_capture
from stages.metrics import psnr, ssim
from stages.model import Avat3rNet
from stages.model.checkpoint import load_model
from stages.reconstruct import reconstruct
from stages.render import render

METHODS = ("avat3r", "nearest view", "prior points")


def _scores(pred: torch.Tensor, gt: torch.Tensor, lpips_net) -> dict[str, float]:
    p, t = pred.permute(0, 3, 1, 2).clamp(0, 1), gt.permute(0, 3, 1, 2)
    out = {"psnr": psnr(p, t).mean().item(), "ssim": ssim(p, t).mean().item()}
    if lpips_net is not None:
        with torch.no_grad():
            out["lpips"] = lpips_net(p, t).mean().item()
    return out


def evaluate_capture(capture_dir: Path, model: Avat3rNet, meta: dict, checkpoint: Path | None,
                     device: torch.device, lpips_net=None) -> tuple[dict[str, dict[str, float]], dict]:
    """Score one capture folder that has a `targets/` folder (frames with per-frame expressions)."""
    avatar = reconstruct(capture_dir, checkpoint, device)
    driver = AvatarDriver(avatar, model)
    targets: Capture = read_capture(capture_dir / "targets")
    if targets.expressions is None:
        raise ValueError(f"{capture_dir}/targets has no per-frame expressions")
    gt = targets.images * targets.masks[..., None]  # composited on black
    black = torch.zeros(3, device=device)
    preds = {m: [] for m in METHODS}
    baseline_net = Avat3rNet(model.cfg).to(device).eval()  # zero-initialised head: the prior-points baseline
    base_driver = AvatarDriver(avatar, baseline_net)
    inputs = read_capture(capture_dir).resized(targets.images.shape[1])
    in_dirs = inputs.cameras.forward_dirs()
    for i in range(len(targets)):
        cam = targets.cameras[i].to(device)
        code = targets.expressions[i].numpy()
        preds["avat3r"].append(render(driver.gaussians(code), cam, background=black).rgb[0].cpu())
        preds["prior points"].append(render(base_driver.gaussians(code), cam, background=black).rgb[0].cpu())
        k = int((in_dirs @ targets.cameras.forward_dirs()[i]).argmax())
        preds["nearest view"].append(inputs.images[k] * inputs.masks[k, ..., None])
    stacked = {m: torch.stack(v) for m, v in preds.items()}
    scores = {m: _scores(stacked[m], gt, lpips_net) for m in METHODS}
    return scores, {"inputs": inputs.images * inputs.masks[..., None], "gt": gt, **stacked}


def evaluate_synthetic(checkpoint: Path | None, seeds: list[int], device: torch.device, lpips: bool = True,
                       track: Callable = lambda it, desc, total: it, workdir: Path | None = None) -> dict:
    """Make a synthetic test capture per seed and score it; returns per-subject and mean metrics."""
    from stages.metrics import LPIPS, lpips_available
    from stages.synth import make_synthetic_capture

    model, meta = load_model(checkpoint, device)
    lpips_net = LPIPS("alex").to(device).eval() if lpips and lpips_available("alex") else None
    rows, grids = [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for seed in track(seeds, "evaluating", len(seeds)):
            cap = make_synthetic_capture(Path(tmp) / f"s{seed}", seed, size=model.cfg.image_size)
            scores, images = evaluate_capture(cap, model, meta, checkpoint, device, lpips_net)
            rows.append({"subject": f"synthetic seed {seed}", **{m: scores[m] for m in METHODS}})
            grids.append(images)
    means = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in rows[0][m]} for m in METHODS}
    return {"checkpoint": meta.get("path"), "checkpoint_sha256": meta.get("sha256"), "subjects": rows,
            "mean": means, "lpips": "alex" if lpips_net is not None else "unavailable", "_images": grids}


def markdown_table(report: dict) -> str:
    keys = list(report["mean"]["avat3r"].keys())
    head = "| subject | method | " + " | ".join(k.upper() for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 2)]
    for row in report["subjects"] + [{"subject": "**mean**", **report["mean"]}]:
        for m in METHODS:
            vals = " | ".join(f"{row[m][k]:.4f}" if k != "psnr" else f"{row[m][k]:.2f}" for k in keys)
            lines.append(f"| {row['subject']} | {m} | {vals} |")
    return "\n".join(lines) + "\n"


def image_grid(images: list[dict], rows: int = 4) -> np.ndarray:
    """Per subject: its 4 inputs, then for the first 2 targets: ground truth | ours | nearest | prior points."""
    out = []
    for im in images[:rows]:
        cells = list(im["inputs"])
        for t in range(min(2, im["gt"].shape[0])):
            cells += [im["gt"][t], im["avat3r"][t], im["nearest view"][t], im["prior points"][t]]
        out.append(torch.cat(cells, dim=1))
    return torch.cat(out, dim=0).clamp(0, 1).numpy()
