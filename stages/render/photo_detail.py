"""Photo detail: an avatar's render sharpened with the input photo nearest the camera, where the two agree.

An avatar of a real person is blurred: its colours blend four views whose geometry disagrees by millimetres.
Its geometry is still good enough to carry a photo: the nearest input, reprojected into the camera through the
avatar's rendered depth, beat the nearest-input baseline on the real cases' face region where the avatar
itself did not (benchmarks/blur_registration.py). The photo shows its own expression, though, so it is kept only
where, blurred, it agrees with the blurred render: where the avatar shows another expression (an open jaw, a
blink) or something the photo does not see, the avatar's pixels stay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import MIN_TURN_DEG, Cameras, viewing_spread_deg

SIGMA_PX = 2.0  # blur before comparing: differences finer than this are what the photo is for
TAU = 0.35  # colour distance (RGB, 0-1) at which the photo's weight has fallen to 1/e; chosen on the dev cases


def nearest_view(inputs: Cameras, camera: Cameras) -> int:
    """Index of the input camera whose orientation is closest to `camera`'s (one camera)."""
    rel = inputs.c2w[:, :3, :3].transpose(1, 2) @ camera.c2w[0, :3, :3].to(inputs.c2w)
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return int(torch.argmax(cos))


def photo_detail_wanted(choice: bool | None, cameras: Cameras) -> bool:
    """`--photo-detail` / `--no-photo-detail` as given; unset, on for inputs that turn less than MIN_TURN_DEG
    (prepare's "hardly turns" warning): stereo has no baseline there, the avatar is blurred most, and every view
    is near a photo. Studio captures, whose heads already render sharp, stay as they are."""
    if choice is not None:
        return choice
    return viewing_spread_deg(cameras.c2w.detach().double().cpu().numpy()) < MIN_TURN_DEG


def reproject(image: Tensor, mask: Tensor, source: Cameras, target: Cameras, depth: Tensor
              ) -> tuple[Tensor, Tensor]:
    """The source view's image (H, W, 3) seen from the target camera, each target pixel at camera-space depth
    `depth` (H, W) along its ray; returns it and where it is valid (in front of and inside the source frame,
    inside its mask)."""
    o, d = target.rays()
    fwd = target.forward_dirs()[0]
    points = o[0] + d[0] * (depth / (d[0] @ fwd).clamp(min=1e-3))[..., None]
    uv, z = source.project(points.reshape(-1, 3))
    h, w = depth.shape
    uv = uv[0].reshape(h, w, 2)
    grid = torch.stack([uv[..., 0] / source.width * 2 - 1, uv[..., 1] / source.height * 2 - 1], -1)
    src = torch.cat([image, mask[..., None]], -1).permute(2, 0, 1)[None].float()
    out = F.grid_sample(src, grid[None].float(), align_corners=False, padding_mode="border")[0].permute(1, 2, 0)
    inside = (grid.abs() < 1).all(-1) & (z[0].reshape(h, w) > 0)
    return out[..., :3], inside & (out[..., 3] > 0.5)


def gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    """(H, W, C) blurred by a separable Gaussian, edges replicated."""
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = img.shape[-1]
    x = F.pad(img.permute(2, 0, 1)[None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x[0].permute(1, 2, 0)


def agreeing(photo: Tensor, rgb: Tensor, sigma: float = SIGMA_PX, tau: float = TAU) -> Tensor:
    """`photo` where, blurred, it matches the blurred `rgb` (weight exp(-(d/tau)^2)), `rgb` elsewhere."""
    d = (gaussian_blur(photo, sigma) - gaussian_blur(rgb, sigma)).norm(dim=-1, keepdim=True)
    return rgb + torch.exp(-(d / tau) ** 2) * (photo - rgb)


def render_sharpened(gaussians, camera: Cameras, background: Tensor, photos: InputPhotos | None,  # noqa: ANN001
                     depth: bool = True) -> tuple[Tensor, object]:
    """`stages.render.render` of one camera, its colour (H, W, 3) sharpened with the nearest input photo when
    `photos` are given (`InputPhotos.sharpen`, which needs the depth, so depth is rendered then): the one way
    `render`, driving and the expression benchmark draw an avatar's frame. Returns (rgb, the RenderOutput)."""
    from stages.render import render

    out = render(gaussians, camera, background=background, depth=depth or photos is not None)
    rgb = out.rgb[0]
    if photos is not None:
        rgb = photos.sharpen(rgb, out.alpha[0], out.depth[0], camera, background)
    return rgb, out


@dataclass
class InputPhotos:
    """An avatar's input photos (V, h, w, 3), masks (V, h, w) and cameras, moved to the render device once
    rather than every frame."""

    images: Tensor
    masks: Tensor
    cameras: Cameras

    @staticmethod
    def of(avatar, device: torch.device | str) -> InputPhotos:  # noqa: ANN001 - stages.avatar.Avatar
        return InputPhotos(avatar.images.to(device), avatar.masks.to(device), avatar.cameras.to(device))

    def reprojected(self, rgb: Tensor, alpha: Tensor, depth: Tensor, camera: Cameras, background: Tensor
                    ) -> Tensor:
        """One render (rgb (H, W, 3) composited over `background`, alpha (H, W, 1), depth (H, W, 1) as
        `stages.render.render` returns them) with its pixels replaced by the nearest input photo wherever that
        photo sees them, composited with the render's own alpha (so the silhouette stays the avatar's)."""
        v = nearest_view(self.cameras, camera)
        a = alpha[..., 0]
        z = depth[..., 0] / a.clamp(min=1e-4)
        photo, valid = reproject(self.images[v].to(rgb), self.masks[v].to(rgb), self.cameras[v:v + 1], camera, z)
        keep = (valid & (a > 0.5)).unsqueeze(-1).to(rgb)
        bg = background.to(rgb).view(1, 1, 3)
        composite = photo * alpha + bg * (1 - alpha)
        return keep * composite + (1 - keep) * rgb

    def sharpen(self, rgb: Tensor, alpha: Tensor, depth: Tensor, camera: Cameras, background: Tensor) -> Tensor:
        """The render sharpened with the reprojected photo where the two agree (`agreeing`)."""
        return agreeing(self.reprojected(rgb, alpha, depth, camera, background), rgb)
