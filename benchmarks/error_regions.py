"""Where a real-case score's whole-crop error lives: each target's squared error (over white, as
`../shared/real/score.py` composites it) summed inside regions of the crop and divided by the crop's pixel
count, so the regions add up to the whole crop's MSE. Printed for the avatar's renders and for the
nearest-input baseline, means over all targets.

`--by face` (the default): the face hull (`gt/face_NNN.png`), the rows above the hull's lowest row outside it
(hair, ears, background beside the head), and every row below (chin, neck, body).

`--by frame`: what no reconstruction of the person can know. The scorer crops each target around its face
with white padding where the crop leaves the video frame, and the ground truth's mask takes in a black
letterbox bar where the video has one; an avatar renders the body wherever it is, so it pays for every body
pixel past the frame's edge and every bar pixel. Regions: past the target's source frame (from the case's
`meta.json`: the target's crop in its frame), letterbox rows or columns of the frame (as dark as
`stages/capture/letterbox.py`'s bars across the crop), and the picture (the rest). A per-case table adds the
PSNR of the whole crop and of the picture alone.

    python benchmarks/error_regions.py --cases ../shared/real/cases --work WORK [--by frame]   # WORK: score.py's
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

FACE_REGIONS = ("face", "beside/above", "below face")
FRAME_REGIONS = ("picture", "past the frame", "letterbox bar")
BAR_LEVEL = 24 / 255  # stages/capture/letterbox.py's level: a bar line's every pixel is at most this
BAR_SHARE = 0.95  # share of a frame line's pixels inside the crop that must be that dark


def over_white(path: Path, mask: np.ndarray | None = None) -> np.ndarray:
    """RGB in [0, 1] composited over white, by `mask` (straight) or by the image's own alpha, read as the scorer's
    `auto` reads it: premultiplied when every partly covered pixel's colour is at most its alpha (our renders)."""
    im = np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255
    rgb, a = im[..., :3], (im[..., 3:] if mask is None else mask[..., None])
    semi = a[..., 0] < 0.99
    if mask is None and semi.any() and np.all(rgb[semi] <= a[semi] + 2.5 / 255):
        return np.clip(rgb + (1 - a), 0, 1)
    return rgb * a + (1 - a)


def region_masks(face: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.where(face.any(1))[0]
    below = np.zeros_like(face)
    if len(rows):
        below[rows.max() + 1:] = True
    return {"face": face, "beside/above": ~face & ~below, "below face": below}


def frame_masks(target: dict, photo: np.ndarray) -> dict[str, np.ndarray]:
    """The crop's pixels past its source frame, on letterbox lines of the frame, and the rest. `target` is the
    target's entry in meta.json (`size` of the frame, `crop` x0 / y0 / side in frame pixels); `photo` the ground
    truth's RGB before its mask."""
    size = photo.shape[0]
    width, height = target["size"]
    crop = target["crop"]
    ys, xs = np.mgrid[0:size, 0:size]
    fx = crop["x0"] + (xs + 0.5) * crop["side"] / size
    fy = crop["y0"] + (ys + 0.5) * crop["side"] / size
    inside = (fx >= 0) & (fx < width) & (fy >= 0) & (fy < height)
    dark = (photo.max(-1) <= BAR_LEVEL) & inside
    bar = np.zeros_like(inside)
    for axis in (1, 0):  # rows (their pixels summed along x), then columns
        n_in, n_dark = inside.sum(axis), dark.sum(axis)
        lines = (n_in > 0) & (n_dark >= BAR_SHARE * np.maximum(n_in, 1))
        bar |= (lines[:, None] if axis == 1 else lines[None, :]) & inside
    return {"picture": inside & ~bar, "past the frame": ~inside, "letterbox bar": bar}


def case_errors(case: Path, renders: Path, by: str) -> dict[tuple[str, str], list[float]]:
    """Per (image, region) the targets' MSE shares; also (image, "whole") and (image, "picture PSNR")."""
    out: dict[tuple[str, str], list[float]] = {}
    meta = json.loads((case / "meta.json").read_text()) if by == "frame" else None
    if meta is not None and any("size" not in t for t in meta["targets"]):
        sys.exit(f"{case / 'meta.json'}: its targets record no frame size, which --by frame needs "
                 "(dev cases cut before make_dev_cases.py recorded it: cut them again)")
    for gt_path in sorted(case.glob("gt/[0-9][0-9][0-9].png")):
        k = gt_path.stem
        mask = np.asarray(Image.open(case / "gt" / f"mask_{k}.png").convert("L"), np.float64) / 255
        gt = over_white(gt_path, mask)
        if meta is not None:
            photo = np.asarray(Image.open(gt_path).convert("RGB"), np.float64) / 255
            regions = frame_masks(meta["targets"][int(k)], photo)
        else:
            regions = region_masks(np.asarray(Image.open(case / "gt" / f"face_{k}.png").convert("L")) > 127)
        for label, path in (("avatar", renders / f"{k}.png"), ("nearest", case / "baseline" / f"nearest_{k}.png")):
            err = ((over_white(path) - gt) ** 2).mean(-1)
            for name, m in regions.items():
                out.setdefault((label, name), []).append(float(err[m].sum() / err.size))
            out.setdefault((label, "whole"), []).append(10 * np.log10(1 / max(float(err.mean()), 1e-12)))
            if "picture" in regions:
                pic = float(err[regions["picture"]].mean())
                out.setdefault((label, "picture PSNR"), []).append(10 * np.log10(1 / max(pic, 1e-12)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="the cases folder score.py read")
    ap.add_argument("--work", type=Path, required=True, help="score.py's --work folder (WORK/case/renders)")
    ap.add_argument("--skip", default="", help="comma list of case names to leave out (a diagnosis only)")
    ap.add_argument("--by", choices=("face", "frame"), default="face", help="which regions (see above)")
    a = ap.parse_args()
    skip = {s for s in a.skip.split(",") if s}
    totals: dict[tuple[str, str], list[float]] = {}
    per_case: dict[str, dict[tuple[str, str], float]] = {}
    for case in sorted(a.cases.glob("case_*")):
        if case.name in skip or not (a.work / case.name / "renders").is_dir():
            continue
        errors = case_errors(case, a.work / case.name / "renders", a.by)
        per_case[case.name] = {key: float(np.mean(v)) for key, v in errors.items()}
        for key, values in errors.items():
            totals.setdefault(key, []).extend(values)
    if not per_case:
        ap.error(f"{a.work}: no case_*/renders/ of the cases in {a.cases}")
    print("| region | avatar MSE share | nearest input MSE share |\n|---|---|---|")
    for name in FRAME_REGIONS if a.by == "frame" else FACE_REGIONS:
        print(f"| {name} | {np.mean(totals[('avatar', name)]):.4f} | {np.mean(totals[('nearest', name)]):.4f} |")
    if a.by == "frame":  # the scorer's means: over cases of each case's mean over its targets
        print("\n| case | avatar: whole crop / picture PSNR | nearest input: whole crop / picture PSNR |")
        print("|---|---|---|")
        rows = [*per_case.items(), ("**mean**", {key: float(np.mean([c[key] for c in per_case.values()]))
                                                 for key in next(iter(per_case.values()))})]
        for name, c in rows:
            print(f"| {name} | {c[('avatar', 'whole')]:.2f} / {c[('avatar', 'picture PSNR')]:.2f} | "
                  f"{c[('nearest', 'whole')]:.2f} / {c[('nearest', 'picture PSNR')]:.2f} |")


if __name__ == "__main__":
    main()
