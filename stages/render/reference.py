"""A dense, pure-torch reference of the rasteriser (as gsplat keeps its `_torch_impl`): every Gaussian against
every pixel, front to back, with gsplat's compositing rules (alpha clamped to 0.999, skipped below 1/255, a pixel
stops once its transmittance would fall to 1e-4). Slow, differentiable and obviously correct: the tiled autograd
path, the inference fast path and backends are checked against it (tests/test_render*.py)."""

from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from stages.cameras import Cameras
from stages.gaussians import Gaussians
from stages.render.sh import view_colors


def reference_render(g: Gaussians, cams: Cameras, bg: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Dense front-to-back compositing with gsplat's rules, written pixel-parallel and Gaussian-sequential."""
    W, H = cams.width, cams.height
    dt = g.means.dtype
    cams = cams.to(dtype=dt)
    covars, _ = _quat_scale_to_covar_preci(g.quats, g.log_scales.exp(), compute_preci=False)
    radii, m2d, depths, conics, _ = _fully_fused_projection(g.means, covars, cams.viewmats(), cams.K(), W, H)
    op = torch.sigmoid(g.opacity_logits)
    jj, ii = torch.meshgrid(torch.arange(W, dtype=dt) + 0.5, torch.arange(H, dtype=dt) + 0.5, indexing="xy")
    outs = []
    for c in range(len(cams)):
        colors = view_colors(g, cams.centers()[c:c + 1])[0]
        idx = (radii[c] > 0).all(-1).nonzero()[:, 0]
        idx = idx[torch.argsort(depths[c][idx], stable=True)]
        T = torch.ones(H, W, dtype=dt)
        done = torch.zeros(H, W, dtype=torch.bool)
        rgb = torch.zeros(H, W, 3, dtype=dt)
        dep = torch.zeros(H, W, dtype=dt)
        for k in idx.tolist():
            dx, dy = m2d[c, k, 0] - jj, m2d[c, k, 1] - ii
            a, b, cc = conics[c, k]
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(op[k] * torch.exp(-sigma), 0.999)
            ok = (sigma >= 0) & (alpha >= 1 / 255) & ~done
            next_t = T * (1 - alpha)
            stop = ok & (next_t <= 1e-4)
            ok, done = ok & ~stop, done | stop
            w = torch.where(ok, alpha * T, torch.zeros_like(T))
            rgb = rgb + w[..., None] * colors[k]
            dep = dep + w * depths[c, k]
            T = torch.where(ok, next_t, T)
        alpha_img = 1 - T
        depth = dep / alpha_img.clamp_min(1e-10)
        outs.append((rgb + T[..., None] * bg[c], alpha_img[..., None], depth[..., None]))
    return tuple(torch.stack(t) for t in zip(*outs, strict=True))
