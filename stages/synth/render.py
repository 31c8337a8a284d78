"""Rendering synthetic heads: pick a sample density for the cameras, pose the cached head, rasterise."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.synth.head import Cloud, get_model, spacing_levels
from stages.synth.identity import HeadIdentity
from stages.synth.raster import max_spacing_px, rasterize

MIN_SPACING = 0.00032  # metres; finer renders use larger splats instead of ever more samples
NEAREST_SURFACE = 0.17  # metres from the head centre to its farthest-out point (hair, nose)


def choose_spacing(cameras: Cameras, supersample: int) -> tuple[float, int]:
    """(sample spacing in metres, splat footprint in supersampled pixels) that leave no holes in any camera."""
    dist = cameras.centers().norm(dim=-1)
    near = (dist - NEAREST_SURFACE).clamp(min=0.05)
    px_per_m = float((torch.maximum(cameras.fx, cameras.fy) / near).max()) * supersample
    footprint = 3
    while True:
        h = 0.92 * max_spacing_px(footprint) / px_per_m
        if h >= MIN_SPACING or footprint >= 5:
            return spacing_levels(h), footprint
        footprint += 1


def _expression(expr: np.ndarray | Tensor) -> np.ndarray:
    e = expr.detach().cpu().numpy() if torch.is_tensor(expr) else np.asarray(expr)
    e = e.astype(np.float32).reshape(-1)
    if e.shape[0] != 52:
        raise ValueError(f"expected an ARKit-52 code of 52 values, got {e.shape[0]}")
    return e


def head_cloud(identity: HeadIdentity, expression: np.ndarray | Tensor, spacing: float = 0.0009,
               device: torch.device | str = "cpu") -> Cloud:
    """The posed samples of a head (world space), e.g. to check depth against the surface."""
    return get_model(identity, spacing_levels(spacing), device).pose(_expression(expression))


def render_head(identity: HeadIdentity, expression: np.ndarray | Tensor, cameras: Cameras,
                device: torch.device | str = "cpu", supersample: int = 2,
                labels: bool = False, depth: bool = True) -> dict[str, Tensor]:
    """Render one identity at one expression into every camera.

    Returns "rgb" (V,H,W,3) straight colour in [0,1] (not premultiplied; black where alpha is 0), "alpha"
    (V,H,W) anti-aliased coverage, "depth" (V,H,W) camera-space z in metres (0 on the background) and, with
    labels=True, "label" (V,H,W) int64 part ids (stages.synth.head.LABELS) of the nearest sample. depth=False
    leaves depth out (faster, for writers that store only RGBA)."""
    device = torch.device(device)
    cams = cameras.to(device)
    h, footprint = choose_spacing(cams, supersample)
    cloud = get_model(identity, h, device).pose(_expression(expression))
    out = rasterize(cloud.points, cloud.normals, cloud.front, cloud.back, cams, supersample=supersample,
                    footprint=footprint, two_sided=cloud.two_sided, labels=cloud.label if labels else None,
                    depth="surface" if depth else "none")
    return out


def head_keypoints(identity: HeadIdentity, expression: np.ndarray | Tensor,
                   device: torch.device | str = "cpu") -> Tensor:
    """World-space 3D landmarks (K, 3), in the order of KEYPOINT_NAMES, for the posed head."""
    from stages.synth.keypoints import keypoints

    return keypoints(get_model(identity, spacing_levels(0.0016), device), _expression(expression))


__all__ = ["choose_spacing", "head_cloud", "head_keypoints", "render_head"]
