"""Photometric variety of the wide training recipe: a camera's colour response and image degradation.

Two parts, because of what a real capture is. A person's inputs and the frames we judge the avatar on share
the room's light and the camera's colour processing, so a *global* colour transform (exposure, white balance,
gamma) is drawn per input configuration and applied to its inputs AND its targets: the model learns to keep
the input colours, whatever they are, rather than to pull every head toward the studio look. On top, each input
view gets its own small exposure/white-balance drift (auto exposure), sensor noise, blur and JPEG-like blocks,
which the targets do not get: the avatar should be the clean head, not the noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.train.augment import gaussian_blur

GLOBAL_SHARE = 0.8  # configurations with a global colour transform
EXPOSURE_STOPS = 0.6  # global: ×2^±0.6
WHITE_BALANCE = 0.12  # global: red and blue gains ×e^±0.12 against green
GAMMA = 0.2  # global: exponent ×e^±0.2
VIEW_STOPS = 0.15  # per view
VIEW_BALANCE = 0.03
NOISE_SHARE, READ_NOISE, SHOT_NOISE = 0.7, 0.02, 0.03
BLUR_SHARE, BLUR_PX = 0.5, 1.2  # at 256²
JPEG_SHARE, JPEG_QUALITY = 0.6, (30.0, 95.0)


def _u(g: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def sample_colour(generator: torch.Generator) -> Tensor:
    """(4,): RGB gains and a gamma; the identity (1, 1, 1, 1) for the configurations left untouched."""
    g = generator
    if float(torch.rand(1, generator=g)) >= GLOBAL_SHARE:
        return torch.ones(4)
    exposure = 2 ** _u(g, -EXPOSURE_STOPS, EXPOSURE_STOPS)
    wb = torch.exp(_u(g, -WHITE_BALANCE, WHITE_BALANCE, 2))
    gains = exposure * torch.stack([wb[0], torch.ones(()), wb[1]])
    gamma = torch.exp(_u(g, -GAMMA, GAMMA))
    return torch.cat([gains, gamma])


def apply_colour(rgb: Tensor, colour: Tensor) -> Tensor:
    """Straight colour (..., 3) through gains and gamma (colour (4,) or broadcastable (..., 4))."""
    c = colour.to(rgb)
    return ((rgb * c[..., :3]).clamp(0, 1) + 1e-6) ** c[..., 3:4] - 1e-6 ** c[..., 3:4]


def _view_colour(n: int, g: torch.Generator) -> Tensor:
    wb = torch.exp(_u(g, -VIEW_BALANCE, VIEW_BALANCE, 2 * n).view(n, 2))
    exposure = 2 ** _u(g, -VIEW_STOPS, VIEW_STOPS, n)
    gains = exposure[:, None] * torch.stack([wb[:, 0], torch.ones(n), wb[:, 1]], -1)
    return torch.cat([gains, torch.ones(n, 1)], -1)


# ----- JPEG-like blocks ----------------------------------------------------------------------------------
_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_CHROMA = torch.full((8, 8), 99.0)
_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])


def _dct_matrix() -> Tensor:
    k = torch.arange(8, dtype=torch.float32)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


def jpeg_like(images: Tensor, quality: Tensor) -> Tensor:
    """(V, H, W, 3) in [0,1] (H, W multiples of 16) → the same after a JPEG-style round trip at `quality` (V,)
    in 1..100: YCbCr, 2×2 chroma subsampling, 8×8 DCT quantised with the standard tables. No entropy coding,
    no file: only the artefacts (blocks, ringing, colour bleeding)."""
    V, H, W, _ = images.shape
    x = images.float()
    m = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).to(x)
    ycc = x @ m.T  # (V, H, W, 3), Cb/Cr centred on 0
    chroma = ycc[..., 1:].permute(0, 3, 1, 2)
    chroma = F.interpolate(F.avg_pool2d(chroma, 2), scale_factor=2, mode="nearest")
    ycc = torch.cat([ycc[..., :1], chroma.permute(0, 2, 3, 1)], -1)
    q = quality.to(x).clamp(1, 100)
    scale = torch.where(q < 50, 50 / q, 2 - q / 50).clamp(min=0.01)  # libjpeg's quality → table scale
    tables = torch.stack([_LUMA, _CHROMA, _CHROMA]).to(x) / 255.0  # (3, 8, 8)
    qt = (tables[None] * scale[:, None, None, None]).clamp(min=1 / 255)  # (V, 3, 8, 8)
    d = _dct_matrix().to(x)
    blocks = ycc.permute(0, 3, 1, 2).reshape(V, 3, H // 8, 8, W // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks @ d.T  # (V, 3, H/8, W/8, 8, 8)
    qt = qt[:, :, None, None]
    coef = torch.round(coef / qt) * qt
    blocks = d.T @ coef @ d
    ycc = blocks.permute(0, 1, 2, 4, 3, 5).reshape(V, 3, H, W).permute(0, 2, 3, 1)
    return (ycc @ torch.linalg.inv(m).T).clamp(0, 1).to(images.dtype)


def degrade_inputs(images: Tensor, colour: Tensor, generator: torch.Generator) -> Tensor:
    """Input views (V, H, W, 3): the configuration's global colour, each view's own drift, then blur, sensor
    noise and JPEG-like compression, each on a random share of the views."""
    g = generator
    V, H, W, _ = images.shape
    px = H / 256
    per_view = _view_colour(V, g)
    x = apply_colour(images.float(), colour.to(images.device)[None, None, None] * per_view.to(images.device)
                     [:, None, None])
    blur = torch.where(torch.rand(V, generator=g) < BLUR_SHARE, _u(g, 0.3, BLUR_PX, V) * px, torch.zeros(V))
    x = gaussian_blur(x.permute(0, 3, 1, 2), blur).permute(0, 2, 3, 1)
    noisy = (torch.rand(V, generator=g) < NOISE_SHARE).float()
    read = _u(g, 0.0, READ_NOISE, V) * noisy
    shot = _u(g, 0.0, SHOT_NOISE, V) * noisy
    eps = torch.randn(x.shape, generator=g).to(x)
    sd = read.to(x)[:, None, None, None] + shot.to(x)[:, None, None, None] * x.clamp(min=0).sqrt()
    x = (x + sd * eps).clamp(0, 1)
    jpeg = torch.rand(V, generator=g) < JPEG_SHARE
    if bool(jpeg.any()) and H % 16 == 0 and W % 16 == 0:
        quality = _u(g, *JPEG_QUALITY, V)
        x = torch.where(jpeg.to(x.device)[:, None, None, None], jpeg_like(x, quality), x)
    return x.to(images.dtype)
