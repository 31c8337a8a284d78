"""The CUDA path: gsplat 1.5.3's fused `rasterization` with the same inputs as the torch rasteriser (colours
already evaluated per camera, so both paths share the SH step) and expected depth as an extra channel."""

from __future__ import annotations

import functools

from torch import Tensor


@functools.cache
def available() -> bool:
    """True when gsplat's CUDA extension loads. The first call may compile it (minutes, once per machine);
    without a CUDA toolkit, or if the build fails, rendering falls back to the torch rasteriser."""
    try:
        from gsplat.cuda._backend import _C
    except Exception:  # a failed JIT build raises many kinds of errors
        return False
    return _C is not None


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int, background: Tensor,
                     eps2d: float, near_plane: float, far_plane: float, depth: bool = True
                     ) -> tuple[Tensor, Tensor, Tensor | None]:
    """colors (C, N, 3), background (C, 3). Returns rgb (C,H,W,3), alpha (C,H,W,1), depth (C,H,W,1) or None."""
    from gsplat import rasterization

    out, alpha, _ = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                  near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
                                  backgrounds=background, render_mode="RGB+ED" if depth else "RGB",
                                  rasterize_mode="classic",
                                  packed=False)  # gsplat 1.5.3's packed mode rejects per-image backgrounds
    return out[..., :3], alpha, out[..., 3:4] if depth else None
