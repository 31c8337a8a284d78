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


def sample(images: Tensor, uv: Tensor, mode: str = "bilinear") -> Tensor:
    """Look up images (B, C, H, W) at pixel positions uv (B, ..., 2); returns (B, C, ...), zeros outside."""
    B, C, H, W = images.shape
    shape = uv.shape[1:-1]
    grid = to_grid(uv.reshape(B, 1, -1, 2), W, H)
    out = F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.reshape(B, C, *shape)


def inside_image(uv: Tensor, width: int, height: int) -> Tensor:
    """Boolean (...,) for pixel positions that land on the image."""
    return (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)


def _expand(x: Tensor, dims: int) -> Tensor:
    """(N, ...) per-camera values shaped to broadcast against (N, <dims axes>, ...)."""
    return x.reshape(x.shape[0], *((1,) * dims), *x.shape[1:])


def to_camera(cameras: Cameras, x: Tensor, point: bool = True, shared: bool = False) -> Tensor:
    """World points (point=True) or directions (N, ..., 3), one set per camera, or with shared=True (..., 3)
    for all cameras, in each camera's OpenCV frame (x right, y down, z forward): (N, ..., 3).

    The rigid inverse is written out as elementwise arithmetic: no matrix inverse and no host tensors, so
    it never synchronises a GPU."""
    if shared:
        x = x.expand(len(cameras), *x.shape)
    dims = x.dim() - 2
    if point:
        x = x - _expand(cameras.c2w[:, :3, 3], dims)
    return (_expand(_cv_rows(cameras), dims) * x[..., None, :]).sum(-1)


def _cv_rows(cameras: Cameras) -> Tensor:
    """(N, 3, 3) world-to-camera rotations into OpenCV axes: R^T with OpenGL's y and z rows negated."""
    rt = cameras.c2w[:, :3, :3].transpose(1, 2)
    return torch.stack([rt[:, 0], -rt[:, 1], -rt[:, 2]], dim=1)


def to_pixels(cameras: Cameras, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """Pixel positions (N, ..., 2) of camera-frame coordinates x, y, z (N, ...) (meaningless where z <= 0)."""
    dims = x.dim() - 1
    zs = z.clamp(min=1e-8)
    u = _expand(cameras.fx, dims) * x / zs + _expand(cameras.cx, dims)
    v = _expand(cameras.fy, dims) * y / zs + _expand(cameras.cy, dims)
    return torch.stack([u, v], dim=-1)


def project(cameras: Cameras, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project points into every camera: (uv (N, ..., 2), camera-space depth z (N, ...)).

    `points` is (N, ..., 3), one set per camera, or (P, 3), the same points for all cameras."""
    cam = to_camera(cameras, points, shared=points.dim() == 2)
    return to_pixels(cameras, cam[..., 0], cam[..., 1], cam[..., 2]), cam[..., 2]


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


def scene_bounds(cameras: Cameras, masks: Tensor) -> tuple[Tensor, Tensor]:
    """A sphere (centre (3,), radius (0-dim)) that holds everything the masks can show.

    The centre is the point nearest to all optical axes (the cameras of a capture look at the head); when
    the axes are nearly parallel that is ill-posed and the world origin, where SPEC puts the head, is used.
    The radius is the largest foreground extent seen at the centre's depth, with a margin. The 3x3 solve
    runs on the CPU and the radius stays a device tensor, so a GPU is synchronised once at most."""
    cpu = cameras.to("cpu")
    o, d = cpu.centers(), cpu.forward_dirs()
    P = torch.eye(3, dtype=o.dtype) - d[:, :, None] * d[:, None, :]
    A, b = P.sum(0), (P @ o[:, :, None]).sum(0)[:, 0]
    well_posed = float(torch.linalg.eigvalsh(A)[0]) > 0.05 * len(cameras)
    centre = (torch.linalg.solve(A, b) if well_posed else torch.zeros(3)).to(cameras.c2w)
    uv, z = project(cameras, centre[None])
    uv, z = uv[:, 0], z[:, 0].clamp(min=1e-6)
    H, W = masks.shape[-2:]
    jj = torch.arange(W, device=masks.device, dtype=o.dtype) + 0.5
    ii = torch.arange(H, device=masks.device, dtype=o.dtype) + 0.5
    dx = (jj[None, None, :] - uv[:, 0, None, None]) / cameras.fx[:, None, None]
    dy = (ii[None, :, None] - uv[:, 1, None, None]) / cameras.fy[:, None, None]
    dist = (dx**2 + dy**2).sqrt() * z[:, None, None]
    extent = torch.where(masks > 0.5, dist, torch.zeros_like(dist)).amax()
    fallback = (W / cameras.fx).max() * z.max()  # no foreground at all: the whole field of view
    return centre, 1.25 * torch.where(extent > 0, extent, fallback)


def sphere_interval(origins: Tensor, dirs: Tensor, centre: Tensor, radius: Tensor | float
                    ) -> tuple[Tensor, Tensor]:
    """Ray parameters (t_near, t_far) where rays enter and leave the sphere (t_near clamped at 0)."""
    oc = origins - centre
    b = (oc * dirs).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = (b * b - c).clamp(min=0.0).sqrt()
    return (-b - disc).clamp(min=0.0), (-b + disc).clamp(min=0.0)
