"""A small z-buffered triangle rasteriser for depth maps, batched over views, in plain torch (CPU or CUDA).

Each triangle is tested against the pixel centres of its bounding box (a fixed-size tile per triangle, so the
work is one batch); covered pixels get the exact distance along their ray to the triangle's plane, and the
nearest one wins (`scatter_reduce` amin). Meant for meshes of a few thousand small triangles, such as the
468-point face mesh, not for general rendering.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.geometry import project


def rasterize_depth(cameras: Cameras, vertices: Tensor, triangles: Tensor, budget: int = 1 << 20
                    ) -> tuple[Tensor, Tensor]:
    """Ray distance to the nearest triangle per pixel (V, H, W) and whether any covers it (V, H, W) bool.

    `vertices` (V, N, 3) are world points, one set per view (a shared mesh: expand it); `triangles` (T, 3)
    vertex indices. Triangles behind a camera are skipped. A pixel is covered when its centre lies inside the
    triangle (edges shared by two triangles belong to both, so a closed patch has no cracks). The (view,
    triangle) pairs are sorted by size and processed in groups of about `budget` tested pixels, each with a
    tile as large as its largest triangle."""
    V, H, W = len(cameras), cameras.height, cameras.width
    dev, dtype = vertices.device, vertices.dtype
    uv, z = project(cameras, vertices)  # (V, N, 2), (V, N)
    view = torch.arange(V, device=dev).repeat_interleave(triangles.shape[0])
    tri_uv = uv[:, triangles].reshape(-1, 3, 2)  # (P, 3, 2), view-major
    lo = (tri_uv.amin(1) - 0.5).ceil().clamp(min=0)  # first pixel index whose centre can be inside
    hi = (tri_uv.amax(1) - 0.5).floor()
    hi = torch.stack([hi[:, 0].clamp(max=W - 1), hi[:, 1].clamp(max=H - 1)], -1)
    extent = (hi - lo + 1).clamp(min=0).amax(-1)
    keep = (z[:, triangles].reshape(-1, 3) > 1e-4).all(-1) & (extent > 0)
    a, b, c = (vertices[:, triangles[:, k]].reshape(-1, 3) for k in range(3))  # (P, 3) world corners
    normal = torch.cross(b - a, c - a, dim=-1)
    offset = (normal * (a - cameras.centers().to(dtype)[view])).sum(-1)  # the plane along a ray: t = this / n.d
    order = torch.where(keep, extent, torch.zeros_like(extent)).argsort()
    order = order[keep[order]]
    sizes = extent[order].clamp(max=max(H, W)).long().tolist()
    _, d = cameras.rays()
    d = d.to(dtype).reshape(-1, 3)
    t_best = torch.full((V * H * W,), float("inf"), device=dev, dtype=dtype)
    start = 0
    while start < len(order):
        stop = start + 1  # grow the group while its pixel tests stay within the budget
        while stop < len(order) and (stop + 1 - start) * sizes[stop] ** 2 <= budget:
            stop += 1
        tile, sel = sizes[stop - 1], order[start:stop]
        start = stop
        step = torch.arange(tile, device=dev, dtype=dtype)
        px = lo[sel, None, None, 0] + step[None, None, :]  # (p, 1, K) column indices
        py = lo[sel, None, None, 1] + step[None, :, None]  # (p, K, 1) row indices
        px, py = torch.broadcast_tensors(px, py)
        inside = (px <= hi[sel, None, None, 0]) & (py <= hi[sel, None, None, 1])
        inside &= _covers(tri_uv[sel], px + 0.5, py + 0.5)
        flat = view[sel, None, None] * (H * W) + py.long() * W + px.long()
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        denom = (normal[sel, None, None] * d[flat]).sum(-1)
        t = offset[sel, None, None] / torch.where(denom.abs() > 1e-12, denom, torch.full_like(denom, 1e-12))
        t = torch.where(inside & (t > 0), t, torch.full_like(t, float("inf")))
        t_best.scatter_reduce_(0, flat.reshape(-1), t.reshape(-1), reduce="amin")
    hit = torch.isfinite(t_best)
    return torch.where(hit, t_best, torch.zeros_like(t_best)).reshape(V, H, W), hit.reshape(V, H, W)


def _covers(tri: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Whether points (x, y) (P, K, K) lie inside the 2D triangles tri (P, 3, 2), either orientation."""
    def edge(p: Tensor, q: Tensor) -> Tensor:
        px, py = p[..., 0, None, None], p[..., 1, None, None]
        qx, qy = q[..., 0, None, None], q[..., 1, None, None]
        return (qx - px) * (y - py) - (qy - py) * (x - px)

    e0, e1, e2 = edge(tri[..., 0, :], tri[..., 1, :]), edge(tri[..., 1, :], tri[..., 2, :]), \
        edge(tri[..., 2, :], tri[..., 0, :])
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
