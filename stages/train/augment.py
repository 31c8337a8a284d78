"""Input-side corruptions of the wide training recipe: what real captures do to the cameras, masks and
backgrounds the model (and the positional prior) sees. Targets are never touched here: the model must learn to
produce the true head from imperfect inputs.

Every function takes a CPU torch.Generator, so a pool build is a pure function of its seed on any device.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.cameras import Cameras

# head-pose cameras (MediaPipe, a face tracker) are off by a few degrees and millimetres per frame
NOISE_DEG = (1.0, 3.0)
NOISE_MM = (2.0, 5.0)
FOCAL_ERROR = 0.03  # relative, shared by a capture's views: an assumed field of view is a little off
CLEAN_SHARE = 0.15  # configurations that keep exact cameras, so calibrated rigs stay in the distribution


def _u(g: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _axis_angle(axis: Tensor, angle: Tensor) -> Tensor:
    """(N, 3) unit axes and (N,) angles (radians) → (N, 3, 3) rotations (Rodrigues)."""
    k = torch.zeros(axis.shape[0], 3, 3)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3) + s * k + (1 - c) * (k @ k)


def noisy_cameras(cams: Cameras, generator: torch.Generator) -> Cameras:
    """Each view's camera rotated about the head centre by 1-3° (random axis) and moved 2-5 mm (random
    direction), as a head-pose estimate is off; the views share a focal error of up to ±3%. 15% of the time
    the cameras stay exact."""
    g = generator
    n = len(cams)
    if float(torch.rand(1, generator=g)) < CLEAN_SHARE:
        return cams
    axis = F.normalize(torch.randn(n, 3, generator=g), dim=-1)
    angle = torch.deg2rad(_u(g, *NOISE_DEG, n))
    shift = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * _u(g, *NOISE_MM, n)[:, None] / 1000.0
    focal = 1 + FOCAL_ERROR * (2 * float(torch.rand(1, generator=g)) - 1)
    rot = _axis_angle(axis, angle).to(cams.c2w)
    c2w = cams.c2w.clone()
    c2w[:, :3, :] = rot @ cams.c2w[:, :3, :]  # the whole pose turns about the head centre (the world origin)
    c2w[:, :3, 3] = c2w[:, :3, 3] + shift.to(c2w)
    return replace(cams, c2w=c2w, fx=cams.fx * focal, fy=cams.fy * focal)


# ----- masks ---------------------------------------------------------------------------------------------
MAX_GROW_PX = 3  # at 256²: segmenters are off by a few pixels along the outline (hair, ears, collars)
MAX_BLOBS = 4
BLOB_RADIUS_PX = (2.0, 10.0)
EDGE_BLUR_PX = (0.0, 2.0)
BINARY_SHARE = 0.5  # many segmenters give hard masks


def _grow(m: Tensor, r: int) -> Tensor:
    """Dilate (r > 0) or erode (r < 0) a (H, W) mask by |r| pixels (square structuring element)."""
    if r == 0:
        return m
    k = 2 * abs(r) + 1
    x = m[None, None] if r > 0 else -m[None, None]
    y = F.max_pool2d(x, k, stride=1, padding=abs(r))[0, 0]
    return y if r > 0 else -y


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur (N, C, H, W) with a per-image Gaussian of `sigma` (N,) pixels (0: unchanged)."""
    out = x.clone()
    for i, s in enumerate(sigma.tolist()):
        if s < 0.2:
            continue
        r = max(1, int(math.ceil(2.5 * s)))
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = k / k.sum()
        c = x.shape[1]
        y = F.pad(x[i:i + 1], (r, r, r, r), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out[i:i + 1] = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out


def noisy_masks(masks: Tensor, generator: torch.Generator) -> Tensor:
    """(V, H, W) coverage → what a segmenter might return: the outline grown or shrunk by up to 3 px, a few
    blobs added or cut out along it, edges blurred, and half the time thresholded to a hard mask."""
    g = generator
    V, H, W = masks.shape
    px = H / 256
    out = []
    for v in range(V):
        m = masks[v].float()
        m = _grow(m, round(int(torch.randint(-MAX_GROW_PX, MAX_GROW_PX + 1, (1,), generator=g)) * px))
        band = (_grow(m, max(1, round(6 * px))) - _grow(m, -max(1, round(6 * px)))).clamp(0, 1)
        n_blobs = int(torch.randint(0, MAX_BLOBS + 1, (1,), generator=g))
        where = torch.nonzero(band.flatten() > 0).flatten().cpu() if n_blobs else None
        for _ in range(n_blobs):
            pick = int(torch.randint(0, max(1, len(where)), (1,), generator=g))
            idx = int(where[pick]) if len(where) else int(torch.randint(0, H * W, (1,), generator=g))
            cy, cx = idx // W + 0.5, idx % W + 0.5
            ry, rx = (_u(g, *BLOB_RADIUS_PX, 2) * px).tolist()
            y0, y1 = max(0, int(cy - ry)), min(H, int(cy + ry) + 1)  # the blob's bounding box only
            x0, x1 = max(0, int(cx - rx)), min(W, int(cx + rx) + 1)
            yy = torch.arange(y0, y1, device=m.device, dtype=m.dtype)[:, None] + 0.5
            xx = torch.arange(x0, x1, device=m.device, dtype=m.dtype)[None, :] + 0.5
            blob = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).to(m.dtype)
            add = float(torch.rand(1, generator=g)) < 0.5
            win = m[y0:y1, x0:x1]
            m = m.clone()
            m[y0:y1, x0:x1] = torch.maximum(win, blob) if add else win * (1 - blob)
        sigma = _u(g, *EDGE_BLUR_PX) * px
        m = gaussian_blur(m[None, None], sigma)[0, 0]
        if float(torch.rand(1, generator=g)) < BINARY_SHARE:
            m = (m > float(_u(g, 0.35, 0.65))).to(m.dtype)
        out.append(m.clamp(0, 1))
    return torch.stack(out).to(masks.dtype)


# ----- backgrounds ---------------------------------------------------------------------------------------
BACKGROUND_KINDS = {"solid": 0.2, "gradient": 0.25, "smooth": 0.25, "texture": 0.15, "white": 0.075, "black": 0.075}


def _colour(g: torch.Generator) -> Tensor:
    """A room colour: mostly muted, any brightness."""
    grey = torch.rand(1, generator=g)
    tint = (torch.rand(3, generator=g) - 0.5) * 0.5
    return (grey + tint * torch.rand(1, generator=g)).clamp(0, 1)


def random_background(H: int, W: int, generator: torch.Generator) -> Tensor:
    """(H, W, 3) on CPU: a solid colour, a linear gradient, a smooth blotchy field, a fine noise texture,
    white (a crop padded past the photo's edge) or black (today's background)."""
    g = generator
    kinds, w = list(BACKGROUND_KINDS), torch.tensor(list(BACKGROUND_KINDS.values()))
    kind = kinds[int(torch.multinomial(w, 1, generator=g))]
    if kind in ("white", "black"):
        return torch.full((H, W, 3), 1.0 if kind == "white" else 0.0)
    a = _colour(g)
    if kind == "solid":
        return a.expand(H, W, 3).clone()
    if kind == "gradient":
        b = _colour(g)
        ang = float(torch.rand(1, generator=g)) * 2 * math.pi
        y, x = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
        t = ((x * math.cos(ang) + y * math.sin(ang)) * 0.5 + 0.5).clamp(0, 1)[..., None]
        return a * (1 - t) + b * t
    cells = int(torch.randint(3, 12, (1,), generator=g)) if kind == "smooth" else int(torch.randint(24, 96, (1,),
                                                                                                     generator=g))
    field = torch.rand(1, 3, cells, cells, generator=g)
    field = F.interpolate(field, size=(H, W), mode="bicubic" if kind == "smooth" else "nearest")[0].permute(1, 2, 0)
    amount = 0.5 if kind == "smooth" else 0.25
    return (a + amount * (field - 0.5)).clamp(0, 1)


def composite_backgrounds(images: Tensor, coverage: Tensor, generator: torch.Generator) -> Tensor:
    """Straight-colour renders (V, H, W, 3) over random backgrounds, blended by the TRUE coverage (V, H, W)
    as a camera would see them; the mask the model gets may differ (noisy_masks), which is why this matters:
    real captures have the room wherever the mask is wrong."""
    V, H, W, _ = images.shape
    bg = torch.stack([random_background(H, W, generator) for _ in range(V)]).to(images)
    a = coverage[..., None].to(images)
    return images * a + bg * (1 - a)
