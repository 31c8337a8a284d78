"""Differentiable rendering of `Gaussians` into `Cameras`: gsplat on CUDA, a pure-torch rasteriser that
reproduces gsplat's image formation elsewhere (or on request, for parity checks)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.gaussians import Gaussians
from stages.render import gsplat_backend
from stages.render.projection import Projected, project, scaled_rotations
from stages.render.rasterizer import rasterize
from stages.render.sh import sh_basis, view_colors

BACKENDS = ("auto", "gsplat", "torch")


@dataclass
class RenderOutput:
    rgb: Tensor  # (C, H, W, 3), background composited
    alpha: Tensor  # (C, H, W, 1)
    depth: Tensor | None  # (C, H, W, 1) expected camera-space z (0 where alpha is 0); None unless asked for


def background_tensor(background: Tensor | tuple | list | None, n_cams: int, device: torch.device,
                      dtype: torch.dtype) -> Tensor:
    """An RGB colour (3,) or per-camera colours (C, 3) as a (C, 3) tensor; None is black."""
    if background is None:
        return torch.zeros(n_cams, 3, device=device, dtype=dtype)
    bg = torch.as_tensor(background, dtype=dtype).to(device)
    if bg.shape == (3,):
        bg = bg.expand(n_cams, 3)
    if bg.shape != (n_cams, 3):
        raise ValueError(f"background must be an RGB colour or one per camera, got shape {tuple(bg.shape)}")
    return bg


def pick_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The backend to use: "auto" is gsplat for float32 CUDA tensors when its extension loads, else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        cuda32 = device.type == "cuda" and dtype == torch.float32
        return "gsplat" if cuda32 and gsplat_backend.available() else "torch"
    if backend == "gsplat" and (device.type != "cuda" or dtype != torch.float32):
        raise ValueError("the gsplat backend needs float32 CUDA tensors; use backend='torch' otherwise")
    return backend


def _camera_groups(n_cams: int, pixels: int, max_pixels: int = 1 << 20) -> list[list[int]]:
    """Cameras rasterised together: batching small images saves per-round overhead; the cap bounds memory."""
    per = max(1, max_pixels // max(pixels, 1))
    return [list(range(i, min(i + per, n_cams))) for i in range(0, n_cams, per)]


def render(gaussians: Gaussians, cameras: Cameras, background: Tensor | tuple | None = None,
           backend: str = "auto", *, eps2d: float = 0.3, near_plane: float = 0.01,
           far_plane: float = 1e10, depth: bool = True) -> RenderOutput:
    """Render every camera (image size from `cameras`). Differentiable in all Gaussian parameters.

    The cameras are moved to the Gaussians' device and dtype. `background` is an RGB colour (default black).
    Rasterisation always runs outside autocast: bf16/fp16 Gaussians are promoted to float32. `depth=False`
    skips the depth channel (gsplat then blends 3 channels instead of 4: what driving wants).
    """
    if torch.is_autocast_enabled(gaussians.means.device.type) or gaussians.means.dtype in (torch.float16,
                                                                                           torch.bfloat16):
        with torch.autocast(gaussians.means.device.type, enabled=False):
            g32 = gaussians.to(gaussians.means.device, torch.float32) if gaussians.means.dtype != torch.float64 \
                else gaussians
            bg = background.float() if torch.is_tensor(background) else background
            return render(g32, cameras, bg, backend, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
                          depth=depth)
    g = gaussians
    dev, dt = g.means.device, g.means.dtype
    cams = cameras.to(dev, dt)
    W, H, C = cams.width, cams.height, len(cams)
    bg = background_tensor(background, C, dev, dt)
    if len(g) == 0:  # nothing to draw (gsplat's kernels cannot launch on zero Gaussians)
        zero = torch.zeros(C, H, W, 1, device=dev, dtype=dt) + 0.0 * g.means.sum()  # keeps the autograd graph
        return RenderOutput(bg[:, None, None, :].expand(C, H, W, 3) + zero, zero, zero if depth else None)
    viewmats, Ks = cams.viewmats(), cams.K()
    colors = view_colors(g, cams.centers())  # (C, N, 3)
    scales, opacities = g.log_scales.exp(), torch.sigmoid(g.opacity_logits)
    if pick_backend(backend, dev, dt) == "gsplat":
        rgb, alpha, z = gsplat_backend.rasterize_gsplat(g.means, g.quats, scales, opacities, colors, viewmats,
                                                        Ks, W, H, bg, eps2d, near_plane, far_plane, depth)
        return RenderOutput(rgb, alpha, z)
    rs = scaled_rotations(g.quats, scales)
    outs = []
    for group in _camera_groups(C, W * H):
        projs = [project(g.means, rs, opacities, viewmats[c], Ks[c], W, H, eps2d, near_plane, far_plane)
                 for c in group]
        cols = [colors[c].index_select(0, p.ids) for c, p in zip(group, projs, strict=True)]
        outs.append(rasterize(projs, cols, W, H, bg[group]))
    rgb, alpha, z = (torch.cat(t) for t in zip(*outs, strict=True))
    return RenderOutput(rgb, alpha, z if depth else None)


__all__ = ["BACKENDS", "Projected", "RenderOutput", "pick_backend", "project", "rasterize", "render",
           "scaled_rotations", "sh_basis", "view_colors"]
