"""PSNR and SSIM on image batches, in pure torch so they run on any device and SSIM can serve as a loss.

Both take images (B, C, H, W) with values in [0, max_val] and return one value per image (B,). They compute
in float32 even under bf16 autocast: SSIM subtracts squared means from means of squares, which loses every
significant digit in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(
            f"{name} needs two image batches of the same shape (B, C, H, W), got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None, max_val: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image, (B,).

    `mask` (B, 1 or C, H, W) restricts the mean squared error to the pixels where it is non-zero (weights
    in [0, 1] work too): the error is averaged over the masked pixels and all channels. An exact match gives
    +inf; an image whose mask is empty gives NaN (there is nothing to measure).
    """
    _check_pair(pred, target, "psnr")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        err = (pred.float() - target.float()) ** 2
        if mask is None:
            mse = err.flatten(1).mean(dim=1)
        else:
            if mask.dim() == 3:
                mask = mask[:, None]
            if mask.dim() != 4 or mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:]:
                raise ValueError(
                    f"psnr mask must be (B, 1 or C, H, W) like the images, got {tuple(mask.shape)}"
                )
            weight = mask.float().expand_as(err)
            mse = (err * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1)
        return 10.0 * torch.log10(max_val**2 / mse)


def gaussian_kernel(window: int, sigma: float, device: torch.device | None = None) -> Tensor:
    """Normalised 1-D Gaussian taps (window,), centred; the same taps scipy's gaussian_filter uses."""
    x = torch.arange(window, dtype=torch.float64, device=device) - (window - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return (taps / taps.sum()).float()


def _blur_valid(x: Tensor, taps: Tensor) -> Tensor:
    """Separable Gaussian blur per channel with no padding ('valid'): output (N, C, H-w+1, W-w+1)."""
    c = x.shape[1]
    w = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, w, 1).expand(c, 1, w, 1), groups=c)
    return F.conv2d(x, taps.view(1, 1, 1, w).expand(c, 1, 1, w), groups=c)


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, max_val: float = 1.0) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) per image, (B,); differentiable.

    Gaussian window of `window` taps and std `sigma`, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = max_val,
    population (not sample) variances, and 'valid' filtering: only windows that lie wholly inside the image
    count, as in Wang's reference code. The mean runs over channels and positions, so this equals
    skimage's structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1, channel_axis=...) for the default window (skimage crops the same border).
    """
    _check_pair(pred, target, "ssim")
    if min(pred.shape[-2:]) < window:
        raise ValueError(
            f"ssim needs images of at least {window}x{window} pixels, got {tuple(pred.shape[-2:])}"
        )
    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    with torch.autocast(device_type=pred.device.type, enabled=False):
        x = pred.float()
        y = target.float()
        taps = gaussian_kernel(window, sigma, device=x.device)
        # One blur over the five moment maps at once: x, y, x², y², xy.
        moments = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), taps)
        mu_x, mu_y, e_xx, e_yy, e_xy = moments.chunk(5, dim=1)
        var_x = e_xx - mu_x**2
        var_y = e_yy - mu_y**2
        cov = e_xy - mu_x * mu_y
        num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        return (num / den).flatten(1).mean(dim=1)
