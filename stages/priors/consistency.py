"""Geometric consistency between the views' depth maps: a depth is trusted when another view, looking at the
same 3D point, measured the same point (forward-backward reprojection, as in COLMAP and MVSNet filtering)."""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.geometry import inside_image, project, ray_dirs, sample


def consistent_views(cameras: Cameras, t: Tensor, valid: Tensor, max_px: float = 1.0,
                     max_rel: float = 0.005) -> Tensor:
    """How many other views agree with each pixel's depth: (V, H, W) counts (0 where not `valid`).

    A pixel's 3D point is projected into another view, that view's depth there is lifted back to 3D and
    projected into the first view. The views agree when that lands within `max_px` pixels of where it
    started and the two 3D points are within `max_rel` of the distance to the camera. All (reference, other)
    pairs are evaluated in one batch."""
    V, H, W = t.shape
    dev = t.device
    o, d = cameras.rays()
    pts = (o + t[..., None] * d).reshape(V, -1, 3)
    ref = torch.arange(V, device=dev).repeat_interleave(V - 1)
    src = (ref + torch.arange(1, V, device=dev).repeat(V)) % V
    cam_s = cameras[src]
    uv, z = project(cam_s, pts[ref])  # (P, H*W, 2)
    lookup = torch.stack([t, valid.to(t)], 1)[src]  # (P, 2, H, W)
    got = sample(lookup, uv, mode="nearest")  # (P, 2, H*W)
    t_s, ok_s = got[:, 0], got[:, 1] > 0.5
    x_src = cam_s.centers()[:, None] + t_s[..., None] * ray_dirs(cam_s, uv)
    uv_back, _ = project(cameras[ref], x_src)
    jj, ii = torch.meshgrid(torch.arange(W, device=dev) + 0.5, torch.arange(H, device=dev) + 0.5, indexing="xy")
    pix = torch.stack([jj, ii], -1).to(t).reshape(1, -1, 2)
    err = (uv_back - pix).norm(dim=-1)
    rel = (x_src - pts[ref]).norm(dim=-1) / t.reshape(V, -1)[ref].clamp(min=1e-6)
    seen = ok_s & (z > 0) & inside_image(uv, cameras.width, cameras.height)
    agree = (seen & (err < max_px) & (rel < max_rel)).float().reshape(V, V - 1, H, W).sum(1)
    return agree * valid
