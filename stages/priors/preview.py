"""A PNG to eyeball priors: one row per view with the input image, the depth (distance from the camera,
colour-mapped over the capture's foreground range) and the confidence (colour-mapped over [0, 1])."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.io import write_image
from stages.priors.store import Priors


def _colour(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Turbo colour map of x scaled from [lo, hi], as RGB uint8."""
    scaled = np.clip((x - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    bgr = cv2.applyColorMap((scaled * 255.0 + 0.5).astype(np.uint8), cv2.COLORMAP_TURBO)
    return bgr[..., ::-1]


def preview_image(images: Tensor, cameras: Cameras, priors: Priors) -> np.ndarray:
    """(V * H, 3 * W, 3) uint8: image | depth | confidence, a row per view; images and cameras at the priors'
    size."""
    o = cameras.centers().cpu()[:, None, None, :]
    known = priors.pos.abs().sum(-1) > 0
    depth = torch.where(known, (priors.pos - o).norm(dim=-1), torch.zeros_like(priors.conf)).numpy()
    lo, hi = (float(np.percentile(depth[known.numpy()], 1)), float(np.percentile(depth[known.numpy()], 99))) \
        if bool(known.any()) else (0.0, 1.0)
    rows = []
    for v in range(len(priors.pos)):
        img = (np.clip(images[v].cpu().numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
        k = known[v].numpy()[..., None]
        d = np.where(k, _colour(depth[v], lo, hi), 0)
        c = _colour(priors.conf[v].numpy(), 0.0, 1.0) * (priors.conf[v].numpy()[..., None] > 0)
        rows.append(np.concatenate([img, d.astype(np.uint8), c.astype(np.uint8)], axis=1))
    return np.concatenate(rows, axis=0)


def write_preview(path: str | Path, images: Tensor, cameras: Cameras, priors: Priors) -> None:
    write_image(path, preview_image(images, cameras, priors))
