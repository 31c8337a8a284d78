"""Capture folders (SPEC section 2): the input photos of one subject, their masks and normalised cameras.

`read_capture` is what `priors` and `reconstruct` call; `write_capture` is what `prepare` and the synthetic
example writer call. Images inside a capture are square (prepare crops); alpha, when present, is the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras, frames_from_cameras, read_transforms, write_transforms
from stages.errors import BadInput
from stages.io import atomic_dir, read_image, write_image

MAX_VIEWS = 16  # a capture with more views than this is refused early (the model is trained with 4)


@dataclass
class Capture:
    """A loaded capture: V square RGB images with masks, their cameras and optional known expressions."""

    root: Path
    images: Tensor  # (V, H, W, 3) float32 in [0, 1]
    masks: Tensor  # (V, H, W) float32 in [0, 1]; all ones when the capture has no mask
    cameras: Cameras
    expressions: Tensor | None = None  # (V, D) when every frame records an expression
    expression_space: str | None = None
    has_masks: bool = True

    def __len__(self) -> int:
        return self.images.shape[0]

    def resized(self, size: int) -> Capture:
        """The capture resampled to size×size (area filter down, bilinear up), cameras rescaled to match."""
        if size == self.images.shape[1]:
            return self
        mode = "area" if size < self.images.shape[1] else "bilinear"
        img = torch.nn.functional.interpolate(self.images.permute(0, 3, 1, 2), size=(size, size), mode=mode)
        msk = torch.nn.functional.interpolate(self.masks[:, None], size=(size, size), mode=mode)[:, 0]
        return Capture(self.root, img.permute(0, 2, 3, 1).clamp(0, 1), msk.clamp(0, 1),
                       self.cameras.resized(size, size), self.expressions, self.expression_space, self.has_masks)


def read_capture(path: str | Path, max_views: int = MAX_VIEWS) -> Capture:
    """Load and validate a capture folder; every fault is a BadInput naming the file."""
    root = Path(path)
    tf_path = root / "transforms.json"
    if not root.is_dir():
        raise BadInput("capture folder not found", root)
    if not tf_path.is_file():
        raise BadInput("no transforms.json in the capture folder (run `avat3r prepare` first)", root)
    tf = read_transforms(tf_path)
    n = len(tf.frames)
    if n > max_views:
        raise BadInput(f"{n} views, but at most {max_views} are supported", tf_path)
    images, masks, has_masks = [], [], True
    for i, frame in enumerate(tf.frames):
        img_path = tf.image_path(i)
        img = read_image(img_path)
        h, w = img.shape[:2]
        if (w, h) != (frame.w, frame.h):
            raise BadInput(f"image is {w}x{h} but transforms.json says {frame.w}x{frame.h}", img_path)
        if w != h:
            raise BadInput(f"image is {w}x{h}, not square; run `avat3r prepare` to crop and resize", img_path)
        if img.shape[2] == 4:
            mask = img[..., 3]
        else:
            mpath = tf.mask_path(i) or (root / "masks" / (Path(frame.file_path).stem + ".png"))
            if mpath.is_file():
                mask = read_image(mpath)[..., 0]
                if mask.shape != (h, w):
                    raise BadInput(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}", mpath)
            else:
                mask, has_masks = np.ones((h, w), np.float32), False
        rgb = img[..., :3] if img.shape[2] >= 3 else np.repeat(img, 3, axis=2)
        images.append(rgb)
        masks.append(mask)
    sizes = {im.shape for im in images}
    if len(sizes) != 1:
        raise BadInput(f"images have different sizes {sorted(sizes)}", tf_path)
    expressions = None
    if all("expression" in f.extra for f in tf.frames):
        try:
            expressions = torch.tensor([f.extra["expression"] for f in tf.frames], dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise BadInput("per-frame 'expression' entries must be lists of numbers of one length", tf_path) from exc
    return Capture(root, torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), tf.cameras(),
                   expressions, tf.meta.get("expression_space"), has_masks)


def write_capture(path: str | Path, images: np.ndarray | Tensor, masks: np.ndarray | Tensor | None,
                  cameras: Cameras, expressions: np.ndarray | Tensor | None = None,
                  expression_space: str | None = None, meta: dict[str, Any] | None = None,
                  names: list[str] | None = None, frame_extras: list[dict[str, Any]] | None = None) -> Path:
    """Write a capture folder atomically: RGBA PNGs (alpha = mask) and transforms.json (`frame_extras`: more
    per-frame keys, such as where a view came from)."""
    images = images.detach().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    if masks is not None:
        masks = masks.detach().cpu().numpy() if torch.is_tensor(masks) else np.asarray(masks)
    n = images.shape[0]
    names = names or [f"{i:03d}" for i in range(n)]
    extras: list[dict[str, Any]] = [dict(frame_extras[i]) if frame_extras else {} for i in range(n)]
    if expressions is not None:
        ex = expressions.detach().cpu().numpy() if torch.is_tensor(expressions) else np.asarray(expressions)
        for i in range(n):
            extras[i]["expression"] = [round(float(v), 6) for v in ex[i]]
    top: dict[str, Any] = dict(meta or {})
    if expression_space:
        top["expression_space"] = expression_space
    with atomic_dir(path) as tmp:
        for i in range(n):
            rgb = images[i, ..., :3]
            alpha = masks[i][..., None] if masks is not None else (images[i, ..., 3:4] if images.shape[-1] == 4
                                                                   else None)
            out = np.concatenate([rgb, alpha], axis=-1) if alpha is not None else rgb
            write_image(tmp / "images" / f"{names[i]}.png", out)
        frames = frames_from_cameras(cameras, [f"images/{nm}.png" for nm in names], extras)
        write_transforms(tmp / "transforms.json", frames, top)
    return Path(path)
