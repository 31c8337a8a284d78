"""The driver's per-frame fast path of one avatar, kept out of the model file: decode only a window around each
view's kept pixels, and run the output head and activations on the kept pixels alone. `kept_pixels` does the
expression-independent part once per avatar; `decode_kept` is one frame. Both give exactly the Gaussians of the
full per-pixel maps (`Avat3rNet.decode` + `GaussianMaps.gaussians`); tests/test_model.py checks it."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from stages.gaussians import Gaussians
from stages.model.network import Avat3rNet, IdentityState
from stages.model.windows import crop


@dataclass
class KeptPixels:
    """What `kept_pixels` precomputes once per avatar for `decode_kept`."""

    state: IdentityState  # the skip inputs of the kept pixels only, (N, ·)
    index: Tensor  # (N,) kept pixels within the stacked windows, view-major, row-major
    window: tuple  # (tops, lefts, height, width) in patches: one top-left per view, one common size
    skip_term: Tensor  # (V, C, h, w) the skip half of `fuse`, cropped to the windows
    tokens: Tensor | None = None  # (1, V*ht*wt, D) the windows' tokens (token-wise decoders only)


def kept_pixels(model: Avat3rNet, state: IdentityState, crop_windows: bool = True) -> KeptPixels:
    """Everything of the per-frame path of one avatar (B = 1) that does not depend on the expression: the kept
    pixels' skip inputs, the skip half of `fuse`, and (crop_windows=True) one window per view around its kept
    pixels, so the upsampler runs on the head rather than on the whole image. The window keeps a margin of one
    patch: the convolutions after the tokens (3×3 at ×2, ×4, … and `fuse`) see p/2 + p/4 + … + 1 + 1 = p pixels,
    so the windows' zero padding never reaches a kept pixel and cropped and full decoding agree."""
    p, g = model.cfg.patch_size, model.cfg.image_size // model.cfg.patch_size
    keep = state.keep[0]  # (V, H, W)
    V = keep.shape[0]
    boxes = []
    for v in range(V):
        rows, cols = keep[v].any(1).nonzero()[:, 0], keep[v].any(0).nonzero()[:, 0]
        if not crop_windows or len(rows) == 0:
            boxes.append((0, g, 0, g))
            continue
        boxes.append((int(rows[0]) // p - 1, int(rows[-1]) // p + 2, int(cols[0]) // p - 1, int(cols[-1]) // p + 2))
    ht = min(g, max(b[1] - b[0] for b in boxes))
    wt = min(g, max(b[3] - b[2] for b in boxes))
    tops = [min(max(b[0], 0), g - ht) for b in boxes]
    lefts = [min(max(b[2], 0), g - wt) for b in boxes]
    window = (tops, lefts, ht, wt)
    in_window = crop(keep[:, None], window, p)[:, 0]
    index = in_window.reshape(-1).nonzero()[:, 0]
    flat = keep.reshape(-1).nonzero()[:, 0]
    if len(index) != len(flat):
        raise AssertionError("a window lost kept pixels")
    gathered = IdentityState(**{name: t[0].reshape(-1, *t.shape[4:])[flat] if name not in ("tokens", "skip")
                                else t for name, t in state.tensors().items()})
    tokens = None
    if model.tokenwise_decoder:  # the windows' tokens, contiguous, so a frame decodes nothing else
        grid = state.tokens.view(V, g, g, -1).permute(0, 3, 1, 2)
        tokens = crop(grid, window, 1).flatten(2).transpose(1, 2).reshape(1, -1, grid.shape[1])
        tokens = tokens.to(model.norm.weight.dtype).contiguous()  # a bf16 copy of the net decodes in bf16
    return KeptPixels(gathered, index, window, crop(model.skip_term(state), window, p), tokens)


def decode_kept(model: Avat3rNet, state: IdentityState, codes: Tensor, kept: KeptPixels) -> Gaussians:
    """The per-frame path of one avatar straight to the Gaussians of its kept pixels: the upsampler runs on the
    windows of `kept`, the 1×1 head and the activations on the kept pixels alone (about a quarter)."""
    x = model._features(state, codes, kept.skip_term, kept.window, kept.tokens)
    feats = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])[kept.index]
    out = F.linear(feats, model.head.weight.flatten(1), model.head.bias).float()
    m = model._activate(out, kept.state)
    return Gaussians(m.means, m.quats, m.log_scales, m.opacity_logits, m.colors)
