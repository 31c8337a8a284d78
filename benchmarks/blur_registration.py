"""Why the avatar's face loses to the nearest input on real cases: blur, or registration? A diagnosis over a
`../shared/real/score.py` work folder (it reads the targets' ground truth, so it is never a score).

For every target it compares, inside the face hull and over white as the scorer composites:
- the avatar's render at the target camera (what score.py scored);
- the nearest input (in head rotation) reprojected into the target camera through the avatar's rendered depth:
  as sharp as a photo, placed by the avatar's geometry and the target camera;
- that reprojection kept only where, blurred, it agrees with the blurred render (so an expression the photo
  does not show stays the avatar's);
- the nearest-input baseline (cropped around its own landmarks);
each as it is and moved by the integer shift (within ±RADIUS pixels) that suits the ground truth best. The
shifted reprojection minus the shifted render is what blur costs; the shifted minus the unshifted reprojection
is what misregistration (target camera, geometry) costs.

    python benchmarks/blur_registration.py --cases ../shared/real/cases --work WORK --checkpoint CKPT
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from error_regions import over_white  # noqa: E402

from stages.render.photo_detail import InputPhotos, agreeing  # noqa: E402

METHODS = ("avatar render", "nearest input reprojected", "reprojected where it agrees with the render",
           "nearest-input baseline")


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    return 10 * math.log10(1 / max(float(((a - b) ** 2)[region].mean()), 1e-10))


def shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """img moved by (dy, dx) pixels, white where nothing moved in."""
    out = np.ones_like(img)
    h, w = img.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def best_shift(img: np.ndarray, gt: np.ndarray, region: np.ndarray, radius: int) -> tuple[float, int, int]:
    """(PSNR, dy, dx) of the integer shift within ±radius that brings img closest to gt inside region."""
    return max((psnr(shifted(img, dy, dx), gt, region), dy, dx)
               for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1))


def case_rows(case: Path, work: Path, model, radius: int) -> dict[str, list[tuple[float, ...]]]:
    """Per method: (face PSNR, face PSNR at the best shift, shift length, whole-crop PSNR) for every target of
    one case."""
    from stages.avatar import load_avatar
    from stages.cameras.transforms import read_transforms
    from stages.render import render

    av = load_avatar(work / "avatar.safetensors")
    with torch.no_grad():
        state, _ = model.skip_inputs(av.images[None], av.pos[None], av.conf[None], av.masks[None], av.cameras)
    state.tokens = av.tokens
    photos, white = InputPhotos.of(av, "cpu"), torch.ones(3)
    cams = read_transforms(work / "targets" / "transforms.json").cameras()
    codes = np.load(work / "targets" / "expressions.npy")
    rows: dict[str, list[tuple[float, ...]]] = {m: [] for m in METHODS}
    for i in range(len(cams)):
        k = f"{i:03d}"
        mask = np.asarray(Image.open(case / "gt" / f"mask_{k}.png").convert("L"), np.float64) / 255
        gt = over_white(case / "gt" / f"{k}.png", mask)
        face = np.asarray(Image.open(case / "gt" / f"face_{k}.png").convert("L")) > 127
        with torch.no_grad():
            g = model.decode(state, torch.as_tensor(codes[i], dtype=torch.float32)[None]).gaussians(0)
            out = render(g, cams[i:i + 1], background=(1.0, 1.0, 1.0))
        rgb = out.rgb[0].clamp(0, 1)
        reprojected = photos.reprojected(rgb, out.alpha[0], out.depth[0], cams[i:i + 1], white)
        images = {METHODS[0]: rgb.double().numpy(), METHODS[1]: reprojected.double().numpy(),
                  METHODS[2]: agreeing(reprojected, rgb).double().numpy(),
                  METHODS[3]: over_white(case / "baseline" / f"nearest_{k}.png")}
        for name, img in images.items():
            best, dy, dx = best_shift(img, gt, face, radius)
            whole = psnr(img, gt, np.ones_like(face))
            rows[name].append((psnr(img, gt, face), best, math.hypot(dy, dx), whole))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="the cases folder score.py read")
    ap.add_argument("--work", type=Path, required=True, help="score.py's --work folder (WORK/case/avatar...)")
    ap.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint score.py ran")
    ap.add_argument("--radius", type=int, default=5, help="largest shift tried, in pixels")
    a = ap.parse_args()
    from stages.model.checkpoint import load_model

    model, _ = load_model(a.checkpoint)
    per_case: dict[str, list[tuple[float, ...]]] = {m: [] for m in METHODS}
    for case in sorted(a.cases.glob("case_*")):
        if not (a.work / case.name / "avatar.safetensors").is_file():
            continue
        for name, rows in case_rows(case, a.work / case.name, model, a.radius).items():
            per_case[name].append(tuple(np.mean(rows, axis=0)))
    print("| face region (means of cases) | PSNR | PSNR at the best shift | shift (px) | whole crop PSNR |\n"
          "|---|---|---|---|---|")
    for name in METHODS:
        p, s, d, w = np.mean(per_case[name], axis=0)
        print(f"| {name} | {p:.2f} | {s:.2f} | {d:.1f} | {w:.2f} |")


if __name__ == "__main__":
    main()
