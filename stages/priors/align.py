"""Aligning up-to-scale pointmaps to known cameras.

DUSt3R predicts each pair's two pointmaps in the first camera's frame, at an unknown scale. The capture's
cameras are known, so instead of DUSt3R's free global alignment each pair gets the similarity transform
(scale, rotation, translation) that puts its points on the known rays of their pixels: minimise the weighted
squared distance from every transformed point to its pixel's ray. That is solved by alternating closest
points on the rays with a closed-form weighted Umeyama fit, batched over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Similarity:
    """Batched x -> scale * R x + t."""

    scale: Tensor  # (P,)
    R: Tensor  # (P, 3, 3)
    t: Tensor  # (P, 3)

    def apply(self, x: Tensor) -> Tensor:
        """Transform points (P, ..., 3)."""
        shape = x.shape
        y = torch.einsum("pij,pnj->pni", self.R, x.reshape(shape[0], -1, 3))
        return (self.scale[:, None, None] * y + self.t[:, None]).reshape(shape)


def umeyama(src: Tensor, dst: Tensor, weights: Tensor) -> Similarity:
    """Weighted least-squares similarity mapping src (P, N, 3) onto dst (P, N, 3) (Umeyama 1991)."""
    w = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
    mu_s = (w[..., None] * src).sum(1)
    mu_d = (w[..., None] * dst).sum(1)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = torch.einsum("pn,pni,pnj->pij", w, xd, xs)
    U, S, Vh = torch.linalg.svd(cov)
    sign = torch.ones_like(S)
    sign[:, 2] = torch.sign(torch.linalg.det(U @ Vh))
    R = U @ torch.diag_embed(sign) @ Vh
    var_s = (w * (xs * xs).sum(-1)).sum(1).clamp(min=1e-12)
    scale = (S * sign).sum(1) / var_s
    t = mu_d - scale[:, None] * torch.einsum("pij,pj->pi", R, mu_s)
    return Similarity(scale, R, t)


def closest_on_rays(points: Tensor, origins: Tensor, dirs: Tensor) -> Tensor:
    """The point of each ray (origin + s * unit dir, s >= 0) closest to each point."""
    s = ((points - origins) * dirs).sum(-1, keepdim=True).clamp(min=0.0)
    return origins + s * dirs


def ray_distance(points: Tensor, origins: Tensor, dirs: Tensor) -> Tensor:
    return (points - closest_on_rays(points, origins, dirs)).norm(dim=-1)


def align_to_rays(points: Tensor, origins: Tensor, dirs: Tensor, weights: Tensor, init: Similarity,
                  iterations: int = 30) -> Similarity:
    """The similarity putting points (P, N, 3) onto their rays (origins, unit dirs: (P, N, 3)).

    `weights` (P, N) >= 0; `init` should be roughly right (a pair's first camera pose with a rough scale). The
    weighted point-to-ray distance never increases from one iteration to the next."""
    sim = init
    for _ in range(iterations):
        target = closest_on_rays(sim.apply(points), origins, dirs)
        sim = umeyama(points, target, weights)
    return sim


def initial_scale(points: Tensor, weights: Tensor, rotation: Tensor, centre: Tensor, origins: Tensor,
                  dirs: Tensor) -> Tensor:
    """Closed-form scale s for x -> s * rotation x + centre, the other parameters held fixed, minimising
    weighted squared point-to-ray distances: (P,). Used to start `align_to_rays` from a known camera pose."""
    b = torch.einsum("pij,pnj->pni", rotation, points)
    a = centre[:, None] - origins

    def perp(v: Tensor) -> Tensor:
        return v - (v * dirs).sum(-1, keepdim=True) * dirs

    num = -(weights * (perp(a) * perp(b)).sum(-1)).sum(1)
    den = (weights * (perp(b) ** 2).sum(-1)).sum(1).clamp(min=1e-12)
    s = num / den
    return torch.where(s > 0, s, torch.ones_like(s))
