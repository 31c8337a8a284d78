"""Geometric consistency between the views' depth maps: a depth is trusted when another view, looking at the
same 3D point, measured the same point (forward-backward reprojection, as in COLMAP and MVSNet filtering)."""

from __future__ import annotations

import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.priors.geometry import inside_image, project, ray_dirs, sample


def consistent_views(cameras: Cameras, t: Tensor, valid: Tensor, max_px: float = 1.0,
                     max_rel: float = 0.005) -> Tensor:
    """How many other views agree with each pixel's depth: (V, H, W) counts.

    A pixel's 3D point is projected into another view, that view's depth there is lifted back to 3D and
    projected into the first view. The views agree when that lands within `max_px` pixels of where it started
    and the two 3D points are within `max_rel` of the distance to the camera."""
    V, H, W = t.shape
    o, d = cameras.rays()
    x_ref = o + t[..., None] * d  # (V, H, W, 3)
    jj, ii = torch.meshgrid(torch.arange(W, device=t.device) + 0.5, torch.arange(H, device=t.device) + 0.5,
                            indexing="xy")
    pix = torch.stack([jj, ii], -1).to(t)
    count = torch.zeros(V, H, W, device=t.device)
    pts = x_ref.reshape(V, -1, 3)
    for k in range(1, V):
        src = (torch.arange(V, device=t.device) + k) % V
        cam_s = cameras[src]
        uv, z = project(cam_s, pts)
        lookup = torch.stack([t[src], valid[src].to(t)], 1)  # (V, 2, H, W)
        got = sample(lookup, uv, mode="nearest")  # (V, 2, H*W)
        t_s, ok_s = got[:, 0], got[:, 1] > 0.5
        x_src = o[src, :1, :1].reshape(V, 1, 3) + t_s[..., None] * ray_dirs(cam_s, uv)
        uv_back, _ = project(cameras, x_src)
        err = (uv_back - pix.reshape(1, -1, 2)).norm(dim=-1)
        rel = (x_src - pts).norm(dim=-1) / t.reshape(V, -1).clamp(min=1e-6)
        seen = ok_s & (z > 0) & inside_image(uv, cameras.width, cameras.height)
        agree = seen & (err < max_px) & (rel < max_rel)
        count += agree.reshape(V, H, W).float()
    return count * valid
