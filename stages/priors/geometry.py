"""Small geometric helpers the prior backends share: image lookups at projected points, rays through arbitrary
pixel positions, and a bounding sphere of the subject derived from cameras and masks.

Pixel coordinates follow the toolkit convention: the image's top-left corner is (0, 0) and pixel (row i,
column j) has its centre at (j + 0.5, i + 0.5). That is exactly `grid_sample`'s `align_corners=False` grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import GL_TO_CV, Cameras


def to_grid(uv: Tensor, width: int, height: int) -> Tensor:
    """Continuous pixel coordinates (..., 2) to grid_sample's normalised [-1, 1] (align_corners=False)."""
    if width == height:
        return uv * (2.0 / width) - 1.0
    return torch.stack([uv[..., 0] * (2.0 / width) - 1.0, uv[..., 1] * (2.0 / height) - 1.0], dim=-1)


def sample(images: Tensor, uv: Tensor, mode: str = "bilinear", fill: float = 0.0) -> Tensor:
    """Look up images (B, C, H, W) at pixel positions uv (B, ..., 2); returns (B, C, ...).

    Positions outside the image read `fill`, so callers can tell "no information" from "background"."""
    B, C, H, W = images.shape
    shape = uv.shape[1:-1]
    grid = to_grid(uv.reshape(B, 1, -1, 2), W, H)
    if fill != 0.0:
        images = images - fill
    out = F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if fill != 0.0:
        out = out + fill
    return out.reshape(B, C, *shape)


def inside_image(uv: Tensor, width: int, height: int) -> Tensor:
    """Boolean (...,) for pixel positions that land on the image."""
    return (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)


def _expand(x: Tensor, dims: int) -> Tensor:
    """(N, ...) per-camera values shaped to broadcast against (N, <dims axes>)."""
    return x.reshape(x.shape[0], *((1,) * dims), *x.shape[1:])


def project(cameras: Cameras, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project points into every camera: (uv (N, ..., 2), camera-space depth z (N, ...)).

    `points` is (N, ..., 3), one set per camera, or (P, 3), the same points for all. Elementwise arithmetic
    with the rigid inverse written out, so it never synchronises a GPU (no matrix inverse, no host tensors);
    uv is meaningless where z <= 0."""
    if points.dim() == 2:
        points = points[None]
    dims = points.dim() - 2
    R = _expand(cameras.c2w[:, :3, :3], dims)  # world from camera (OpenGL axes)
    c = _expand(cameras.c2w[:, :3, 3], dims)
    rel = points - c
    # camera coordinates: R^T (x - c); OpenGL (x, y, -z) is OpenCV (x, -y, z)
    x = (R[..., 0, 0] * rel[..., 0] + R[..., 1, 0] * rel[..., 1] + R[..., 2, 0] * rel[..., 2])
    y = -(R[..., 0, 1] * rel[..., 0] + R[..., 1, 1] * rel[..., 1] + R[..., 2, 1] * rel[..., 2])
    z = -(R[..., 0, 2] * rel[..., 0] + R[..., 1, 2] * rel[..., 1] + R[..., 2, 2] * rel[..., 2])
    zs = z.clamp(min=1e-8)
    u = _expand(cameras.fx, dims) * x / zs + _expand(cameras.cx, dims)
    v = _expand(cameras.fy, dims) * y / zs + _expand(cameras.cy, dims)
    return torch.stack([u, v], dim=-1), z


def ray_dirs(cameras: Cameras, uv: Tensor) -> Tensor:
    """Unit world-space ray directions (N, ..., 3) through pixel positions uv (N, ..., 2) of each camera."""
    dims = uv.dim() - 2
    x = (uv[..., 0] - _expand(cameras.cx, dims)) / _expand(cameras.fx, dims)
    y = (uv[..., 1] - _expand(cameras.cy, dims)) / _expand(cameras.fy, dims)
    R = _expand(cameras.c2w[:, :3, :3], dims)
    # OpenCV direction (x, y, 1) is (x, -y, -1) in OpenGL camera axes
    d = R[..., :, 0] * x[..., None] - R[..., :, 1] * y[..., None] - R[..., :, 2]
    return d / d.norm(dim=-1, keepdim=True)


def opencv_c2w(cameras: Cameras) -> Tensor:
    """(N, 4, 4) camera-to-world with OpenCV axes (x right, y down, z forward): DUSt3R's camera frame."""
    return cameras.c2w @ GL_TO_CV.to(cameras.c2w)


def scene_bounds(cameras: Cameras, masks: Tensor) -> tuple[Tensor, float]:
    """A sphere (centre (3,), radius) that holds everything the masks can show.

    The centre is the point nearest to all optical axes (the cameras of a capture look at the head); when
    the axes are nearly parallel that is ill-posed and the world origin, where SPEC puts the head, is used.
    The radius is the largest foreground extent seen at the centre's depth, with a margin."""
    o, d = cameras.centers(), cameras.forward_dirs()
    eye = torch.eye(3, dtype=o.dtype, device=o.device)
    P = eye - d[:, :, None] * d[:, None, :]
    A, b = P.sum(0), (P @ o[:, :, None]).sum(0)[:, 0]
    evals = torch.linalg.eigvalsh(A)
    centre = torch.linalg.solve(A, b) if float(evals[0]) > 0.05 * len(cameras) else torch.zeros(3).to(o)
    uv, z = project(cameras, centre[None])
    uv, z = uv[:, 0], z[:, 0].clamp(min=1e-6)
    H, W = masks.shape[-2:]
    jj = torch.arange(W, device=masks.device, dtype=o.dtype) + 0.5
    ii = torch.arange(H, device=masks.device, dtype=o.dtype) + 0.5
    dx = (jj[None, None, :] - uv[:, 0, None, None]) / cameras.fx[:, None, None]
    dy = (ii[None, :, None] - uv[:, 1, None, None]) / cameras.fy[:, None, None]
    dist = (dx**2 + dy**2).sqrt() * z[:, None, None]
    fg = masks > 0.5
    extent = float(dist[fg].max()) if bool(fg.any()) else float((W / cameras.fx).max() * z.max())
    return centre, 1.25 * extent


def sphere_interval(origins: Tensor, dirs: Tensor, centre: Tensor, radius: float) -> tuple[Tensor, Tensor]:
    """Ray parameters (t_near, t_far) where rays enter and leave the sphere (t_near clamped at 0)."""
    oc = origins - centre
    b = (oc * dirs).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = (b * b - c).clamp(min=0.0).sqrt()
    return (-b - disc).clamp(min=0.0), (-b + disc).clamp(min=0.0)
