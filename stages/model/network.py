"""The Avat3r network in one file.

Per view: image + positional map (+ confidence) + Plücker rays are concatenated per pixel and patchified into
tokens (plus resampled semantic features when present). Self-attention runs over the tokens of all views
together (cross-view matching); cross-attention lets every token look at S expression tokens made from the
code by an MLP. An upsampler turns tokens into per-pixel Gaussian maps at the input resolution, with the skips
`pos += prior_pos` and `rgb += image`. Pixels below the prior confidence threshold or outside the mask are
dropped, so the number of Gaussians adapts to the subject.

Everything before the first cross-attention does not depend on the expression: `encode_identity` runs it once
per avatar and returns an `IdentityState`; `decode` is the per-frame path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.cameras import Cameras
from stages.gaussians import Gaussians
from stages.model.config import ModelConfig
from stages.model.windows import crop as _crop

POS_SCALE = 4.0  # world metres → network units (a head spans about ±0.25 m)
N_OUT = 14  # offset 3, rgb 3, opacity 1, scale 3, rotation 4


def gaussian_pixels(cfg: ModelConfig, masks: Tensor, conf: Tensor) -> Tensor:
    """Which input pixels become Gaussians: inside the mask and, with the positional prior, at or above the
    model's confidence threshold (also what `reconstruct` reports as the avatar's Gaussian count)."""
    fg = masks > 0.5
    return fg & (conf >= cfg.conf_threshold) if cfg.use_pos_prior else fg


class Attention(nn.Module):
    """Multi-head attention through fused SDPA; keys/values from `context` when given (cross-attention)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        ctx = x if context is None else context
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: attention (self, or cross to the expression tokens) then an MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, cross: bool):
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, context if self.cross else None)
        return x + self.mlp(self.norm2(x))


class ExpressionEncoder(nn.Module):
    """Expression code → S tokens of width D (the paper's MLP)."""

    def __init__(self, dim: int, width: int, tokens: int):
        super().__init__()
        self.tokens, self.width = tokens, width
        self.mlp = nn.Sequential(nn.Linear(dim, width), nn.GELU(approximate="tanh"), nn.Linear(width, width),
                                 nn.GELU(approximate="tanh"), nn.Linear(width, tokens * width))
        self.embed = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    def forward(self, code: Tensor) -> Tensor:
        return self.norm(self.mlp(code).view(-1, self.tokens, self.width) + self.embed)


class UpStage(nn.Module):
    """×2 upsampling: 1×1 conv to 4C channels, pixel shuffle, then a 3×3 conv (GRM's upsampler, conv flavour)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.expand = nn.Conv2d(c_in, 4 * c_out, 1)
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(F.pixel_shuffle(self.expand(x), 2), approximate="tanh")
        return F.gelu(self.conv(x), approximate="tanh") + x


@dataclass
class IdentityState:
    """What an avatar caches: the expression-independent activations and the skip inputs of each view."""

    tokens: Tensor  # (B, V*h*w, D) activations just before the first cross-attention
    skip: Tensor  # (B*V, 7, H, W) full-resolution skip input: image, positional map, confidence (network units)
    image: Tensor  # (B, V, H, W, 3) input colours (the rgb skip)
    prior_pos: Tensor  # (B, V, H, W, 3) world positions of the prior (the position skip)
    rays_o: Tensor  # (B, V, H, W, 3)
    rays_d: Tensor  # (B, V, H, W, 3)
    footprint: Tensor  # (B, V, H, W) world size of one pixel at the prior's depth
    keep: Tensor  # (B, V, H, W) bool: pixels that become Gaussians

    def to(self, device: torch.device | str) -> IdentityState:
        return IdentityState(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def repeat(self, n: int) -> IdentityState:
        """Each avatar n times in a row (B -> B*n), to decode n expressions of it in one batch."""
        return self.select(torch.arange(self.image.shape[0], device=self.image.device).repeat_interleave(n))

    def select(self, owner: Tensor) -> IdentityState:
        """Avatar owner[i] as entry i (B -> len(owner)): decode a different number of expressions per avatar."""
        B, V = self.image.shape[:2]
        out = {f.name: getattr(self, f.name).index_select(0, owner) for f in fields(self) if f.name != "skip"}
        skip = self.skip.view(B, V, *self.skip.shape[1:]).index_select(0, owner)
        return IdentityState(skip=skip.flatten(0, 1), **out)


@dataclass
class GaussianMaps:
    """Per-pixel Gaussian parameters for every view, (B, V, H, W, ·), plus which pixels are kept."""

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor  # (B, V, H, W)
    colors: Tensor
    keep: Tensor  # (B, V, H, W) bool

    def gaussians(self, b: int = 0, drop: bool = True) -> Gaussians:
        """The Gaussians of batch element b: dropped pixels removed (drop=True) or made fully transparent."""
        if drop:
            k = self.keep[b]
            return Gaussians(self.means[b][k], self.quats[b][k], self.log_scales[b][k], self.opacity_logits[b][k],
                             self.colors[b][k])
        op = torch.where(self.keep[b], self.opacity_logits[b], torch.full_like(self.opacity_logits[b], -30.0))
        return Gaussians(self.means[b].reshape(-1, 3), self.quats[b].reshape(-1, 4),
                         self.log_scales[b].reshape(-1, 3), op.reshape(-1), self.colors[b].reshape(-1, 3))


class Avat3rNet(nn.Module):
    """Images + priors + cameras (identity) and an expression code (per frame) → pixel-aligned 3D Gaussians."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.width, cfg.patch_size
        heads = cfg.width // cfg.head_dim
        in_ch = 3 + 6 + (4 if cfg.use_pos_prior else 0)
        self.tokenizer = nn.Conv2d(in_ch, d, kernel_size=p, stride=p)
        grid = cfg.image_size // p
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, d) * 0.02)
        self.view_embed = nn.Parameter(torch.zeros(1, cfg.max_views, 1, d))
        self.feat_proj = nn.Linear(cfg.feat_dim, d) if cfg.feat_dim > 0 else None
        self.expr = ExpressionEncoder(cfg.expr_dim, d, cfg.expr_tokens)
        self.input_expr = nn.Linear(cfg.expr_dim, d) if cfg.input_codes else None
        if cfg.layout == "stacked":
            kinds = ["self"] * cfg.self_layers + ["cross"] * cfg.cross_layers
        else:
            kinds = [k for _ in range(cfg.self_layers) for k in ("self", "cross")]
        if cfg.layout == "interleaved" and cfg.self_layers != cfg.cross_layers:
            raise ValueError("interleaved layout needs as many self- as cross-attention layers")
        self.first_decoder_self = len(kinds)  # blocks from here on: `decoder_self_layers`, appended
        kinds = kinds + ["self"] * cfg.decoder_self_layers
        self.kinds = kinds
        self.blocks = nn.ModuleList(Block(d, heads, cfg.mlp_ratio, cross=k == "cross") for k in kinds)
        self.first_cross = kinds.index("cross") if "cross" in kinds else len(kinds)
        # cross-attention to S expression tokens, its MLP and the final norm act on each token alone when no
        # self-attention follows: the per-frame path can then skip tokens outside the decoded windows
        self.tokenwise_decoder = all(k == "cross" for k in kinds[self.first_cross:])
        self.norm = nn.LayerNorm(d)
        chans = [d, *cfg.up_channels]
        self.up = nn.ModuleList(UpStage(chans[i], chans[i + 1]) for i in range(len(cfg.up_channels)))
        c = chans[-1]
        self.fuse = nn.Conv2d(c + 7, c, 3, padding=1)
        self.head = nn.Conv2d(c, N_OUT, 1)
        self.apply(self._init)
        nn.init.zeros_(self.head.weight)  # start as the no-learning baseline: prior points coloured by pixels
        nn.init.zeros_(self.head.bias)
        for p_ in self._zero_start():  # a checkpoint from before these options loads and computes the same
            nn.init.zeros_(p_)
        self.to(memory_format=torch.channels_last)  # NHWC convolutions: ~4x faster on CPU (oneDNN), good on GPU

    def fresh_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters of options that weights trained without them (`train --init`) may lack: they keep their
        initial values, which make the option a no-op (`_zero_start`), so the network computes what it did."""
        fresh = {f"input_expr.{k}": v for k, v in self.input_expr.named_parameters()} if self.input_expr else {}
        for i in range(self.first_decoder_self, len(self.blocks)):
            fresh.update({f"blocks.{i}.{k}": v for k, v in self.blocks[i].named_parameters()})
        return fresh

    def _zero_start(self) -> list[nn.Parameter]:
        """What starts at zero so that an option's parameters change nothing: the input-code projection, and
        the output projections of the appended decoder blocks (a residual block whose outputs are zero is the
        identity; its other weights keep their random start, or no gradient would ever reach them)."""
        zero = list(self.input_expr.parameters()) if self.input_expr else []
        for blk in self.blocks[self.first_decoder_self:]:
            zero += [*blk.attn.out.parameters(), *blk.mlp[2].parameters()]
        return zero

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # ----- identity path (once per avatar) ---------------------------------------------------------------
    def skip_inputs(self, images: Tensor, pos: Tensor, conf: Tensor, masks: Tensor,
                    cameras: Cameras) -> tuple[IdentityState, Tensor]:
        """Everything of the identity state that is cheap to derive from the inputs (all but the tokens), and
        the per-pixel network input. Avatars store only the inputs and the tokens and rebuild the rest here."""
        cfg = self.cfg
        B, V, H, W, _ = images.shape
        if V > cfg.max_views:
            raise ValueError(f"at most {cfg.max_views} views, got {V}")
        if H != cfg.image_size or W != cfg.image_size:
            raise ValueError(f"the model takes {cfg.image_size}² inputs, got {W}x{H}")
        fg = masks > 0.5
        keep = gaussian_pixels(cfg, masks, conf)
        with torch.autocast(images.device.type, enabled=False):  # ray geometry must stay float32
            o, d = cameras.to(images.device, torch.float32).rays(H, W)
        o, d = o.view(B, V, H, W, 3), d.view(B, V, H, W, 3)
        # every foreground pixel's prior position reaches the tokens, with its confidence beside it: the
        # unconfirmed half of the geometry is still the best guess there is (only Gaussians need `keep`)
        pos = torch.where((fg if cfg.token_positions == "foreground" else keep)[..., None], pos, torch.zeros_like(pos))
        img_n, pos_n, conf_n = images * 2 - 1, pos * POS_SCALE, (conf * fg).unsqueeze(-1)
        plucker = torch.cat([torch.cross(o, d, dim=-1), d], dim=-1)
        parts = [img_n, plucker] + ([pos_n, conf_n] if cfg.use_pos_prior else [])
        x = torch.cat(parts, dim=-1).view(B * V, H, W, -1).permute(0, 3, 1, 2)  # NHWC in memory already
        dist = (pos - o).norm(dim=-1) if cfg.use_pos_prior else o.norm(dim=-1)
        footprint = dist / cameras.fx.view(B, V, 1, 1) * (cameras.width / W)
        prior_n = [pos_n, conf_n] if cfg.use_pos_prior else [torch.zeros_like(pos_n), torch.zeros_like(conf_n)]
        skip = torch.cat([img_n, *prior_n], -1)  # without the prior neither its positions nor its confidence
        skip = skip.view(B * V, H, W, 7).permute(0, 3, 1, 2).contiguous()
        empty = images.new_zeros(B, 0, cfg.width)
        return IdentityState(empty, skip, images, pos, o, d, footprint, keep), x

    def encode_identity(self, images: Tensor, pos: Tensor, conf: Tensor, masks: Tensor, cameras: Cameras,
                        feat: Tensor | None = None, input_codes: Tensor | None = None) -> IdentityState:
        """images (B,V,H,W,3) in [0,1], pos (B,V,H,W,3), conf and masks (B,V,H,W), cameras: B*V of them
        (view-major within each batch element), feat (B,V,h,w,C) or None, input_codes (B,V,E): each input's own
        expression (read only by a network with `input_codes`; None there means neutral)."""
        if (feat is None) != (self.feat_proj is None):  # a projection trained on nothing would be noise
            raise ValueError(f"the model takes {self.cfg.feat_dim} semantic feature channels but was given "
                             f"{'none' if feat is None else feat.shape[-1]}")
        if feat is not None and feat.shape[-1] != self.cfg.feat_dim:
            raise ValueError(f"the model takes {self.cfg.feat_dim} semantic feature channels, got {feat.shape[-1]}")
        state, x = self.skip_inputs(images, pos, conf, masks, cameras)
        B, V = images.shape[:2]
        tok = self.tokenizer(x)  # (B*V, D, h, w)
        h, w = tok.shape[-2:]
        tok = tok.flatten(2).transpose(1, 2) + self.pos_embed  # (B*V, h*w, D)
        if feat is not None:  # checked above: the model has a projection for exactly these channels
            f = feat.reshape(B * V, *feat.shape[2:]).permute(0, 3, 1, 2).float()
            ys = (torch.arange(h, device=f.device) + 0.5) / h * 2 - 1
            xs = (torch.arange(w, device=f.device) + 0.5) / w * 2 - 1
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx, gy], -1)[None].expand(B * V, h, w, 2).to(f)
            f = F.grid_sample(f, grid, mode="bilinear", align_corners=False)
            tok = tok + self.feat_proj(f.flatten(2).transpose(1, 2).to(tok.dtype))
        tok = tok.view(B, V, h * w, -1) + self.view_embed[:, :V]
        if self.input_expr is not None:
            codes = input_codes if input_codes is not None else images.new_zeros(B, V, self.cfg.expr_dim)
            if codes.shape != (B, V, self.cfg.expr_dim):
                raise ValueError(f"input codes must be (B, V, {self.cfg.expr_dim}) = ({B}, {V}, "
                                 f"{self.cfg.expr_dim}), got {tuple(codes.shape)}")
            tok = tok + self.input_expr(codes.to(tok.dtype))[:, :, None]
        tok = tok.reshape(B, V * h * w, -1)
        for blk in self.blocks[: self.first_cross]:
            tok = blk(tok)
        state.tokens = tok
        return state

    # ----- expression path (per frame) -------------------------------------------------------------------
    def skip_term(self, state: IdentityState) -> Tensor:
        """The full-resolution skip input's share of the `fuse` convolution. It does not depend on the
        expression, so `kept_pixels` computes it once per avatar for `decode_kept` (≈ 9 ms a frame on CPU)."""
        c = self.fuse.in_channels - state.skip.shape[1]
        skip = state.skip.to(self.fuse.weight.dtype).contiguous(memory_format=torch.channels_last)
        return F.conv2d(skip, self.fuse.weight[:, c:], None, padding=1)

    def decode(self, state: IdentityState, codes: Tensor) -> GaussianMaps:
        """codes (B, E) → per-pixel Gaussian maps for every view of the B avatars in `state` (training and
        batches; one avatar's frames go through `decode_kept`)."""
        B, V, H, W, _ = state.image.shape
        out = self.head(self._features(state, codes, self.skip_term(state))).float()
        return self._activate(out.permute(0, 2, 3, 1).reshape(B, V, H, W, N_OUT), state)

    def _features(self, state: IdentityState, codes: Tensor, skip_term: Tensor, window: tuple | None = None,
                  window_tokens: Tensor | None = None) -> Tensor:
        """Cross-attention to the code, upsampler and fuse: (B*V, C, H, W) features before the output head
        (within each view's window when one is given; `skip_term` must then be cropped the same way, and
        `window_tokens`, when given, are the windows' tokens of a token-wise decoder, decoded alone)."""
        cfg = self.cfg
        B, V, H, W, _ = state.image.shape
        tok = state.tokens if window_tokens is None else window_tokens
        if not torch.is_autocast_enabled(tok.device.type):  # a bf16 copy of the network decodes bf16 tokens
            tok = tok.to(self.norm.weight.dtype)
        ctx = self.expr(codes.to(tok.dtype))
        for blk in self.blocks[self.first_cross:]:
            tok = blk(tok, ctx)
        tok = self.norm(tok)
        if window_tokens is not None:
            _, _, ht, wt = window
            x = tok.view(B * V, ht, wt, -1).permute(0, 3, 1, 2)
        else:
            g = H // cfg.patch_size
            x = tok.view(B * V, g, g, -1).permute(0, 3, 1, 2)
            if window is not None:
                x = _crop(x, window, 1)
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.up:
            x = stage(x)
        # fuse(cat[x, skip]) = conv(x, W_x) + conv(skip, W_skip) + b: the skip half is per avatar, not per frame
        c = x.shape[1]
        x = F.conv2d(x, self.fuse.weight[:, :c], self.fuse.bias, padding=1) + skip_term.to(x.dtype)
        return F.gelu(x, approximate="tanh")

    def _activate(self, out: Tensor, s: IdentityState) -> GaussianMaps:
        cfg = self.cfg
        off, rgb, op, sc, rot = out.split([3, 3, 1, 3, 4], dim=-1)
        if cfg.use_pos_prior and cfg.pos_skip:
            means = s.prior_pos + cfg.max_offset * torch.tanh(off)
        else:  # no position skip: depth along the pixel's ray around the camera's distance to the head
            depth = s.rays_o.norm(dim=-1, keepdim=True) + 0.25 * torch.tanh(off[..., :1])
            means = s.rays_o + s.rays_d * depth
        colors = s.image + rgb if cfg.rgb_skip else torch.sigmoid(rgb)
        log_scales = torch.log(s.footprint.clamp(min=1e-6)).unsqueeze(-1) + sc.clamp(-4.0, 3.0) + math.log(0.8)
        q = torch.cat([rot[..., :1] + 1.0, rot[..., 1:]], dim=-1)  # identity-biased (no host tensor: graphable)
        quats = q * torch.rsqrt((q * q).sum(-1, keepdim=True).clamp_min(1e-12))
        return GaussianMaps(means, quats, log_scales, op[..., 0] + 1.0, colors, s.keep)

    def forward(self, images: Tensor, pos: Tensor, conf: Tensor, masks: Tensor, cameras: Cameras, codes: Tensor,
                feat: Tensor | None = None, owner: Tensor | None = None,
                input_codes: Tensor | None = None) -> GaussianMaps:
        """codes (B, E): one expression per avatar; (B, T, E): T expressions each (monocular video supervision,
        one per target frame), decoded from one identity pass as B*T avatars, avatar b's t-th at b*T + t;
        (N, E) with `owner` (N,): entry i is avatar owner[i] at codes[i] (as many expressions per avatar as it
        needs, from one identity pass). input_codes (B, V, E): see `encode_identity`."""
        state = self.encode_identity(images, pos, conf, masks, cameras, feat, input_codes)
        if owner is not None:
            return self.decode(state.select(owner), codes)
        if codes.dim() == 3:
            return self.decode(state.repeat(codes.shape[1]), codes.flatten(0, 1))
        return self.decode(state, codes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
