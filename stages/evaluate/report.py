"""What an evaluation writes: the per-subject markdown table (with the mean), the image grid, and the paper's
reference numbers (REFERENCE.md, "The paper") that every table quotes for comparison."""

from __future__ import annotations

import math

import numpy as np
import torch

from stages.evaluate.run import METHODS
from stages.evaluate.scoring import COLUMNS

# Avat3r (ICCV 2025), main results: PSNR / SSIM / LPIPS / AKD / CSIM at 512² (their AKD and CSIM detectors differ
# from ours; see docs/evaluation.md).
PAPER_MAIN = {"Ava256": {"psnr": 20.7, "ssim": 0.71, "lpips": 0.33, "akd": 4.8, "csim": 0.59},
              "NeRSemble": {"psnr": 20.5, "ssim": 0.75, "lpips": 0.33, "akd": 3.7, "csim": 0.50}}


def fmt(key: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.2f}" if key in ("psnr", "face_psnr", "expr_psnr", "expr_gain", "akd", "akd3d") \
        else f"{value:.3f}"


def markdown_table(report: dict) -> str:
    """Per subject and method, then the mean; unavailable metrics and the paper's numbers as notes."""
    keys = list(report["mean"]["avat3r"].keys())
    res = report.get("protocol", {}).get("resolution")
    lines = ["| subject | method | " + " | ".join(COLUMNS.get(k, k) for k in keys) + " |",
             "|" + "---|" * (len(keys) + 2)]
    for row in report["subjects"] + [{"subject": "**mean**", **report["mean"]}]:
        for m in METHODS:
            vals = " | ".join(fmt(k, row[m].get(k)) for k in keys)
            lines.append(f"| {row['subject']} | {m} | {vals} |")
    notes = [""]
    if res:
        notes.append(f"Images at {res}²; AKD in pixels of those images.")
    if report.get("akd3d_gt") is not None:
        notes.append(f"AKD-3D of the ground-truth images themselves (the landmarker's own error; mean over "
                     f"subjects): {report['akd3d_gt']:.2f} px.")
    if "csim_norm" in keys:
        notes.append("CSIM: raw cosine of dlib embeddings; CSIM-norm = (cos − 0.862) / (1 − 0.862), 0 = strangers.")
    for k, why in report.get("unavailable", {}).items():
        if k in ("akd3d", "csim_norm"):
            continue
        notes.append(f"{COLUMNS.get(k, k)} unavailable: {why}")
    notes.append("Paper (512², other detectors): " + "; ".join(
        f"{name} {v['psnr']} / {v['ssim']} / {v['lpips']} / AKD {v['akd']} / CSIM {v['csim']}"
        for name, v in PAPER_MAIN.items()) + " (PSNR / SSIM / LPIPS).")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def image_grid(images: list[dict], rows: int = 4, targets: int = 2) -> np.ndarray:
    """Per subject: its inputs, then for the first targets: ground truth | ours | nearest | prior points."""
    out = []
    for im in images[:rows]:
        cells = list(im["inputs"])
        for t in range(min(targets, im["gt"].shape[0])):
            cells += [im["gt"][t], im["avat3r"][t], im["nearest view"][t], im["prior points"][t]]
        out.append(torch.cat(cells, dim=1))
    width = max(r.shape[1] for r in out)
    out = [torch.nn.functional.pad(r, (0, 0, 0, width - r.shape[1])) for r in out]
    return torch.cat(out, dim=0).clamp(0, 1).numpy()


def jsonable(report: dict) -> dict:
    """The report without its images, NaN as null (strict JSON)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k != "_images"}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x

    return clean(report)
