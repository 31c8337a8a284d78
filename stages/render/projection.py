"""EWA projection of 3D Gaussians into one pinhole camera, reproducing gsplat 1.5.3's fused projection kernel
(`ProjectionEWA3DGSFused.cu`, classic mode): the clamped Jacobian outside a 1.3x field of view, the `eps2d`
low-pass added to the 2D covariance, opacity-aware 3-sigma radii and the same culling tests, so the torch
rasteriser keeps and drops exactly the Gaussians gsplat does."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: Gaussians (and per-pixel alphas) below this are skipped


@dataclass
class Projected:
    """The Gaussians that survive culling in one camera; `ids` index the original set."""

    ids: Tensor  # (M,) long
    means2d: Tensor  # (M, 2) pixels, continuous (top-left corner of the image at 0, 0)
    conics: Tensor  # (M, 3) inverse 2D covariance (a, b, c): sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2
    depths: Tensor  # (M,) camera-space z
    opacities: Tensor  # (M,)
    radii: Tensor  # (M, 2) long, pixels (not differentiable)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) quaternions (w, x, y, z), normalised here, to (N, 3, 3) rotation matrices."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    r = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return r.reshape(-1, 3, 3)


def scaled_rotations(quats: Tensor, scales: Tensor) -> Tensor:
    """M = R S (N, 3, 3): the world covariance is M M^T (a factor is cheaper to rotate than a covariance)."""
    return quat_to_rotmat(quats) * scales[:, None, :]


def project(means: Tensor, rs: Tensor, opacities: Tensor, viewmat: Tensor, K: Tensor, width: int,
            height: int, eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
            radius_clip: float = 0.0) -> Projected:
    """Project N Gaussians (means, `rs` = R S from `scaled_rotations`) into one camera: `viewmat` is
    world-to-camera with OpenCV axes, `K` 3x3. Small matrix products are written out element-wise: batched
    3x3 matmuls are far slower on the CPU."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mean_c = means @ R.T + t
    with torch.no_grad():
        keep = (mean_c[:, 2] >= near_plane) & (mean_c[:, 2] <= far_plane) & (opacities >= ALPHA_THRESHOLD)
    ids = keep.nonzero()[:, 0]
    mean_c = mean_c[ids]
    m = torch.einsum("ij,njk->nik", R, rs[ids])  # camera-space factor: cov_c = m m^T
    x, y, z = mean_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    rz = 1.0 / z
    tx = z * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]; cov2d = (J m)(J m)^T
    row0 = (fx * rz)[:, None] * m[:, 0] - (fx * tx * rz * rz)[:, None] * m[:, 2]
    row1 = (fy * rz)[:, None] * m[:, 1] - (fy * ty * rz * rz)[:, None] * m[:, 2]
    a = (row0 * row0).sum(-1) + eps2d
    b = (row0 * row1).sum(-1)
    c = (row1 * row1).sum(-1) + eps2d
    det = a * c - b * b
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)

    with torch.no_grad():
        op = opacities[ids]
        # opacity-aware extent (gsplat, after arXiv 2402.00525): where alpha falls below 1/255
        extend = torch.sqrt(2.0 * torch.log(op / ALPHA_THRESHOLD).clamp_min(0.0)).clamp_max(3.33)
        rx = torch.ceil(extend * torch.sqrt(a.clamp_min(0.0)))
        ry = torch.ceil(extend * torch.sqrt(c.clamp_min(0.0)))
        mx, my = means2d.unbind(-1)
        ok = ((det > 0) & ~((rx <= radius_clip) & (ry <= radius_clip))
              & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
              & torch.isfinite(mx) & torch.isfinite(my))
        sel = ok.nonzero()[:, 0]
    det = det[sel]
    conics = torch.stack([c[sel] / det, -b[sel] / det, a[sel] / det], -1)
    radii = torch.stack([rx[sel], ry[sel]], -1).long()
    return Projected(ids[sel], means2d[sel], conics, z[sel], opacities[ids[sel]], radii)

