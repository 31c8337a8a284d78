"""The network's options in one dataclass (nanoGPT/LGM style): every size, switch and ablation lives here, and
the config travels inside every checkpoint so a checkpoint always rebuilds its own network."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


@dataclass
class ModelConfig:
    image_size: int = 256  # input resolution (square); priors are computed at this size
    patch_size: int = 16  # tokens are patch_size×patch_size pixels of every view
    width: int = 256  # transformer width D
    head_dim: int = 64  # attention heads = width / head_dim
    self_layers: int = 4  # cross-view self-attention blocks (identity encoder)
    cross_layers: int = 4  # expression cross-attention blocks (per-frame decoder)
    layout: str = "stacked"  # "stacked": all self-attention first; "interleaved": self, cross, self, cross, ...
    mlp_ratio: float = 4.0
    expr_space: str = "arkit52"
    expr_dim: int = 52
    expr_tokens: int = 4  # S: the code becomes S tokens of width D
    feat_dim: int = 0  # semantic feature channels (Sapiens); 0 = no-feature configuration
    up_channels: tuple[int, ...] = (128, 64, 32, 16)  # one entry per ×2 upsampling stage (log2(patch_size))
    use_pos_prior: bool = True  # feed the positional map (ablation "no positional prior" when False)
    pos_skip: bool = True  # pos = prior_pos + offset
    rgb_skip: bool = True  # rgb = image + residual
    # drop pixels whose prior confidence is below this (and outside the mask). The paper's 0.5 suits DUSt3R; with
    # the built-in prior it kept 5% of a real capture that hardly turns, and at equal training 0 (every
    # foreground pixel a Gaussian, the network seeing the confidence) scored +1.5 dB on ood and +1.0 dB on real
    # people (benchmarks/RESULTS.md). Saved configs carry their own value.
    conf_threshold: float = 0.0
    max_offset: float = 0.05  # metres: bound on the predicted position offset from the prior
    max_views: int = 4
    # which prior positions the tokens see: "foreground" (all of it, confidence beside it) or "confident" (the
    # first releases: unconfirmed pixels zeroed, so half the geometry never reached the transformer)
    token_positions: str = "foreground"
    # tell the identity encoder each input photo's own expression code (added to its view's tokens through a
    # projection that starts at zero): a monocular clip's inputs often share one expression (all smiling), and a
    # network that cannot see that pastes it onto every target. Off in checkpoints from before the option.
    input_codes: bool = False
    # self-attention blocks after the cross-attention (per frame): in the stacked layout the expression otherwise
    # acts on each token alone (and through 3x3 convolutions), never across tokens or views. They start as the
    # identity (zero output projections), so `train --init` from weights without them continues exactly; each
    # costs one self-attention over all tokens per frame. 0 in checkpoints from before the option.
    decoder_self_layers: int = 0

    def __post_init__(self) -> None:
        self.up_channels = tuple(self.up_channels)
        stages = self.patch_size.bit_length() - 1
        if 2**stages != self.patch_size:
            raise ValueError("patch_size must be a power of two")
        if len(self.up_channels) != stages:
            raise ValueError(f"up_channels needs {stages} entries for patch size {self.patch_size}")
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.width % self.head_dim:
            raise ValueError("width must be a multiple of head_dim")
        if self.token_positions not in ("foreground", "confident"):
            raise ValueError("token_positions must be 'foreground' or 'confident'")
        if self.layout not in ("stacked", "interleaved"):
            raise ValueError("layout must be 'stacked' or 'interleaved'")
        if self.decoder_self_layers < 0:
            raise ValueError("decoder_self_layers must be 0 or more")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> ModelConfig:
        data = json.loads(text)
        data.setdefault("token_positions", "confident")  # checkpoints from before the switch were trained so
        known = {f.name for f in fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in data.items() if k in known})


PRESETS: dict[str, dict] = {
    # Runs in seconds on a CPU; for tests.
    "tiny": dict(image_size=64, patch_size=8, width=64, self_layers=1, cross_layers=1, up_channels=(32, 16, 16)),
    # The shipped model: small enough for a CPU demo, trained on synthetic heads.
    "base": {},
    # The paper's scale: 512², patch 16, width 768, 8 + 8 layers (for benchmarks and big-GPU training).
    "paper": dict(image_size=512, patch_size=16, width=768, self_layers=8, cross_layers=8,
                  up_channels=(256, 128, 64, 64)),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
