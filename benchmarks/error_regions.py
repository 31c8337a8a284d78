"""Where a real-case score's whole-crop error lives: each target's squared error (over white, as
`../shared/real/score.py` composites it) summed inside three regions of the crop and divided by the crop's pixel
count, so the three add up to the whole crop's MSE. Regions: the face hull (`gt/face_NNN.png`), the rows above
the hull's lowest row outside it (hair, ears, background beside the head), and every row below (chin, neck,
body). Printed for the avatar's renders and for the nearest-input baseline, means over all targets.

    python benchmarks/error_regions.py --cases ../shared/real/cases --work WORK   # WORK: score.py's --work
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

REGIONS = ("face", "beside/above", "below face")


def over_white(path: Path, mask: np.ndarray | None = None) -> np.ndarray:
    """RGB in [0, 1] composited over white, by the image's own alpha or by `mask`."""
    im = np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255
    a = im[..., 3:] if mask is None else mask[..., None]
    return im[..., :3] * a + (1 - a)


def region_masks(face: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.where(face.any(1))[0]
    below = np.zeros_like(face)
    if len(rows):
        below[rows.max() + 1:] = True
    return {"face": face, "beside/above": ~face & ~below, "below face": below}


def case_errors(case: Path, renders: Path) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for gt_path in sorted(case.glob("gt/[0-9][0-9][0-9].png")):
        k = gt_path.stem
        mask = np.asarray(Image.open(case / "gt" / f"mask_{k}.png").convert("L"), np.float64) / 255
        gt = over_white(gt_path, mask)
        regions = region_masks(np.asarray(Image.open(case / "gt" / f"face_{k}.png").convert("L")) > 127)
        for label, path in (("avatar", renders / f"{k}.png"), ("nearest", case / "baseline" / f"nearest_{k}.png")):
            err = ((over_white(path) - gt) ** 2).mean(-1)
            for name, m in regions.items():
                out.setdefault((label, name), []).append(float(err[m].sum() / err.size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="the cases folder score.py read")
    ap.add_argument("--work", type=Path, required=True, help="score.py's --work folder (WORK/case/renders)")
    ap.add_argument("--skip", default="", help="comma list of case names to leave out (a diagnosis only)")
    a = ap.parse_args()
    skip = {s for s in a.skip.split(",") if s}
    totals: dict[tuple[str, str], list[float]] = {}
    for case in sorted(a.cases.glob("case_*")):
        if case.name in skip or not (a.work / case.name / "renders").is_dir():
            continue
        for key, values in case_errors(case, a.work / case.name / "renders").items():
            totals.setdefault(key, []).extend(values)
    print("| region | avatar MSE share | nearest input MSE share |\n|---|---|---|")
    for name in REGIONS:
        print(f"| {name} | {np.mean(totals[('avatar', name)]):.4f} | {np.mean(totals[('nearest', name)]):.4f} |")


if __name__ == "__main__":
    main()
