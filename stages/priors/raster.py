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


def rasterize_depth(cameras: Cameras, vertices: Tensor, triangles: Tensor, budget: int = 1 << 22
                    ) -> tuple[Tensor, Tensor]:
    """Ray distance to the nearest triangle per pixel (V, H, W) and whether any covers it (V, H, W) bool.

    `vertices` (V, N, 3) are world points, one set per view (a shared mesh: expand it); `triangles` (T, 3)
    vertex indices. Triangles behind a camera are skipped. A pixel is covered when its centre lies inside the
    triangle (edges shared by two triangles belong to both, so a closed patch has no cracks)."""
    V, H, W = len(cameras), cameras.height, cameras.width
    dev, dtype = vertices.device, vertices.dtype
    uv, z = project(cameras, vertices)  # (V, N, 2), (V, N)
    tri_uv = uv[:, triangles]  # (V, T, 3, 2)
    tri_ok = (z[:, triangles] > 1e-4).all(-1)  # (V, T)
    lo = (tri_uv.amin(2) - 0.5).ceil().clamp(min=0)  # first pixel index whose centre can be inside
    hi = (tri_uv.amax(2) - 0.5).floor()
    hi = torch.stack([hi[..., 0].clamp(max=W - 1), hi[..., 1].clamp(max=H - 1)], -1)
    extent = (hi - lo + 1).clamp(min=0)
    tri_ok = tri_ok & (extent > 0).all(-1)
    tile = int(extent[tri_ok].max()) if bool(tri_ok.any()) else 0
    t_best = torch.full((V * H * W,), float("inf"), device=dev, dtype=dtype)
    if tile == 0:
        return t_best.reshape(V, H, W).zero_(), torch.zeros(V, H, W, dtype=torch.bool, device=dev)
    tile = min(tile, max(H, W))
    o, d = cameras.rays()  # (V, H, W, 3)
    d = d.to(dtype).reshape(-1, 3)
    centres = cameras.centers().to(dtype)
    a, b, c = (vertices[:, triangles[:, k]] for k in range(3))  # (V, T, 3) world corners
    normal = torch.cross(b - a, c - a, dim=-1)
    offset = (normal * (a - centres[:, None])).sum(-1)  # n . (a - o): the plane along each ray is t = this / n.d
    step = torch.arange(tile, device=dev, dtype=dtype)
    T = triangles.shape[0]
    rows = max(1, budget // (V * tile * tile))
    for s in range(0, T, rows):
        sl = slice(s, min(T, s + rows))
        px = lo[:, sl, None, None, 0] + step[None, None, None, :]  # (V, t, 1, K) column indices
        py = lo[:, sl, None, None, 1] + step[None, None, :, None]  # (V, t, K, 1) row indices
        px, py = torch.broadcast_tensors(px, py)
        inside = (px <= hi[:, sl, None, None, 0]) & (py <= hi[:, sl, None, None, 1]) & tri_ok[:, sl, None, None]
        inside &= _covers(tri_uv[:, sl], px + 0.5, py + 0.5)
        flat = (torch.arange(V, device=dev)[:, None, None, None] * (H * W) + py.long() * W + px.long())
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        n = normal[:, sl, None, None]
        denom = (n * d[flat]).sum(-1)
        t = offset[:, sl, None, None] / torch.where(denom.abs() > 1e-12, denom, torch.full_like(denom, 1e-12))
        ok = inside & (t > 0)
        t = torch.where(ok, t, torch.full_like(t, float("inf")))
        t_best.scatter_reduce_(0, flat.reshape(-1), t.reshape(-1), reduce="amin")
    hit = torch.isfinite(t_best)
    return torch.where(hit, t_best, torch.zeros_like(t_best)).reshape(V, H, W), hit.reshape(V, H, W)


def _covers(tri: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Whether points (x, y) (V, t, K, K) lie inside the 2D triangles tri (V, t, 3, 2), either orientation."""
    def edge(p: Tensor, q: Tensor) -> Tensor:
        px, py = p[..., 0, None, None], p[..., 1, None, None]
        qx, qy = q[..., 0, None, None], q[..., 1, None, None]
        return (qx - px) * (y - py) - (qy - py) * (x - px)

    e0, e1, e2 = edge(tri[..., 0, :], tri[..., 1, :]), edge(tri[..., 1, :], tri[..., 2, :]), \
        edge(tri[..., 2, :], tri[..., 0, :])
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
