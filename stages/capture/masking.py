"""Foreground masks for `prepare`: which pixels are the head.

`--mask` chooses where a view's mask comes from:
- `alpha`: the photo's alpha channel (an RGBA PNG); a photo without one is bad input.
- `folder`: a mask image per photo, 8-bit, 255 = head, the photo's size: the frame's `mask_path` in
  transforms.json, else `masks/<stem>.png` or `masks/<name>.png` (COLMAP's `image.jpg.png`) in the source
  folder.
- `grabcut`: OpenCV GrabCut, needing no downloaded weights. It is seeded from the cameras: the projected head
  sphere is "probably head", a ring just outside it "probably background" and everything farther out
  "background". Good on plain backgrounds, rough on busy ones; deterministic for a given `--seed`.
- `segment`: the offline person segmenter (`segment.person_mask`: MediaPipe's selfie model, hair included;
  GrabCut when the model is not installed). The default for photos without cameras.
- `none`: no mask; the capture keeps the background (a warning says so). Padding added by the crop stays
  masked.
- `auto` (default): the alpha channel, else the mask folder, else none (with the same warning). Every view
  must end up with the same kind of mask; a source where only some photos have masks is bad input.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stages.capture.imaging import SquareCrop
from stages.capture.sources import SourceView
from stages.errors import BadInput
from stages.io import read_image, to_uint8

MASK_METHODS = ("auto", "alpha", "folder", "segment", "grabcut", "none")
GRABCUT_MAX_SIDE = 512  # GrabCut runs on a copy at most this large: masks need no more detail, and it is slow


def find_mask_file(view: SourceView, root: Path) -> Path | None:
    """The mask file for a photo, if the source has one (see the module docstring for where it looks)."""
    if view.mask_path is not None:
        return view.mask_path
    name = Path(view.name).name
    for cand in (root / "masks" / (Path(name).stem + ".png"), root / "masks" / (name + ".png")):
        if cand.is_file():
            return cand
    return None


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image as float32 (H, W) in [0, 1] (its first channel), checked against the photo's size.

    Masks stored as 0/1 instead of 0/255 (a common slip) are recognised and stretched."""
    m = read_image(path)[..., 0]
    if m.shape != shape:
        raise BadInput(f"mask is {m.shape[1]}x{m.shape[0]} but its photo is {shape[1]}x{shape[0]}", path)
    if 0 < m.max() <= 1.5 / 255:
        m = m / m.max()
    return m


def source_mask(view: SourceView, img: np.ndarray, method: str, root: Path) -> tuple[np.ndarray | None, str]:
    """The mask a photo brings with it under `method`, and its kind ('alpha', 'folder', 'segment' or 'none').

    GrabCut is not run here: it needs the head's position in the undistorted photo (see `grabcut_mask`)."""
    has_alpha = img.shape[2] == 4
    if method == "auto" and has_alpha and img[..., 3].min() > 0.999:
        has_alpha = False  # an opaque alpha channel (many exporters add one) says nothing about the head
    if method in ("none", "grabcut"):
        return None, method
    if method == "segment":
        from stages.capture.segment import person_mask

        rgb = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
        return person_mask(to_uint8(rgb)), "segment"
    if method == "alpha" or (method == "auto" and has_alpha):
        if img.shape[2] != 4:
            raise BadInput("--mask alpha, but this photo has no alpha channel", view.image_path)
        return img[..., 3], "alpha"
    mask_file = find_mask_file(view, root)
    if method == "folder" and mask_file is None:
        stem = Path(view.name).stem
        raise BadInput(f"--mask folder, but no mask for it (looked for mask_path and masks/{stem}.png)",
                       view.image_path)
    if mask_file is None:
        return None, "none"
    return read_mask(mask_file, img.shape[:2]), "folder"


def grabcut_mask(rgb: np.ndarray, valid: np.ndarray, crop: SquareCrop, seed: int) -> np.ndarray:
    """A head mask by GrabCut, seeded by the projected head sphere (centre and radius from `crop`)."""
    h, w = rgb.shape[:2]
    f = min(1.0, GRABCUT_MAX_SIDE / max(h, w))
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    small_valid = cv2.resize(valid, (sw, sh), interpolation=cv2.INTER_AREA) if f < 1 else valid
    yy, xx = np.mgrid[0:sh, 0:sw]
    r = np.hypot(xx + 0.5 - crop.centre[0] * f, yy + 0.5 - crop.centre[1] * f) / max(crop.radius * f, 1e-6)
    seeds = np.full((sh, sw), cv2.GC_BGD, np.uint8)
    seeds[r < 1.25] = cv2.GC_PR_BGD
    seeds[r < 1.0] = cv2.GC_PR_FGD
    seeds[small_valid < 0.5] = cv2.GC_BGD
    if not (seeds == cv2.GC_BGD).any() or not (seeds == cv2.GC_PR_FGD).any():
        raise BadInput("--mask grabcut needs some background around the head, but the head fills the photo; "
                       "supply masks (alpha or masks/) instead")
    bgr = cv2.cvtColor(to_uint8(small), cv2.COLOR_RGB2BGR)
    cv2.setRNGSeed(int(seed))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, seeds, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.float32)
    return cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR) if f < 1 else fg
