"""The `sapiens` feature backend: a user-supplied Sapiens TorchScript file (for example the 2B pretraining
model `sapiens_2b_epoch_1600_torchscript.pt2`), run as Sapiens itself preprocesses: 1024x1024 RGB on the
0-255 scale, normalised with its mean and std. It returns the backbone's low-resolution feature maps, which
the model samples per pixel; without such a file there are no features and `feat` is absent."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.errors import BadInput

INPUT_SIZE = 1024
MEAN = (123.5, 116.5, 103.5)
STD = (58.5, 57.0, 57.5)


def load_sapiens(path: Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """Load a TorchScript file onto `device`; a missing or non-TorchScript file is a BadInput naming it."""
    if not path.is_file():
        raise BadInput("Sapiens TorchScript file not found", path)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream, but it is how Sapiens ships
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path), map_location=torch.device(device))
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else exc.__class__.__name__
        raise BadInput(f"not a TorchScript file ({first})", path) from exc
    return model.eval()


def preprocess(images: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """(V, H, W, 3) in [0, 1] to Sapiens' input: (V, 3, size, size), 0-255 scale, normalised."""
    x = images.permute(0, 3, 1, 2).float() * 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


@torch.inference_mode()
def sapiens_features(model: torch.nn.Module, images: Tensor, path: Path | None = None, batch: int = 1,
                     size: int = INPUT_SIZE, steps: Callable[[str], None] | None = None) -> Tensor:
    """Feature maps (V, h, w, C) float32 on the CPU for images (V, H, W, 3) in [0, 1]."""
    dev = next((p.device for p in model.parameters()), images.device)
    dtype = _dtype(model)
    feats = []
    for b in range(0, images.shape[0], batch):
        if steps:
            steps(f"sapiens view {b + 1} of {images.shape[0]}")
        x = preprocess(images[b:b + batch].to(dev), size).to(dtype)
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0] if out else None
        if not torch.is_tensor(out) or out.dim() != 4 or out.shape[0] != x.shape[0]:
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise BadInput(f"the Sapiens model returned {got}, expected feature maps (B, C, h, w)", path)
        feats.append(out.float().permute(0, 2, 3, 1).cpu())
    return torch.cat(feats).contiguous()
