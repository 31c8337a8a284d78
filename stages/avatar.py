"""Avatars (SPEC section 5): the cached identity part of the network for one capture, with everything needed
to drive and render it without the photos or the priors pass again.

An avatar stores the expression-independent tokens, the inputs the per-frame path reads through its skips
(images, positional maps, confidences, masks) and the input cameras; the rest of the identity state is cheap
to rebuild. Its metadata names the checkpoint (sha256 + a portable path hint), the expression space, and the
format version.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.gaussians import Gaussians
from stages.graphs import LazyGraph
from stages.io import atomic_path
from stages.model import Avat3rNet, IdentityState
from stages.model.checkpoint import DEFAULT_CHECKPOINT, checkpoint_sha256, load_model
from stages.model.kept import decode_kept, kept_pixels

FORMAT = "avat3r-avatar"
VERSION = 1


@dataclass
class Avatar:
    """The stored part of an avatar (batch of one)."""

    tokens: torch.Tensor  # (1, V*h*w, D)
    images: torch.Tensor  # (V, H, W, 3)
    pos: torch.Tensor  # (V, H, W, 3)
    conf: torch.Tensor  # (V, H, W)
    masks: torch.Tensor  # (V, H, W)
    cameras: Cameras
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def expression_dim(self) -> int:
        return int(self.meta["expression_dim"])


def create_avatar(model: Avat3rNet, model_meta: dict, images: torch.Tensor, masks: torch.Tensor,
                  cameras: Cameras, pos: torch.Tensor, conf: torch.Tensor,
                  feat: torch.Tensor | None = None, input_codes: torch.Tensor | None = None) -> Avatar:
    """Run the identity encoder once on one capture (already at the model's resolution); `input_codes` (V, E)
    are the inputs' own expressions, for a network that reads them (`stages.capture.input_codes`)."""
    dev = next(model.parameters()).device
    with torch.no_grad():
        feat_b = None if feat is None else feat[None].to(dev)
        codes_b = None if input_codes is None else input_codes[None].to(dev, torch.float32)
        state = model.encode_identity(images[None].to(dev), pos[None].to(dev), conf[None].to(dev),
                                      masks[None].to(dev), cameras.to(dev), feat_b, codes_b)
    meta = avatar_meta(model, model_meta, images.shape[0])
    return Avatar(state.tokens.cpu(), images.cpu(), pos.cpu(), conf.cpu(), masks.cpu(), cameras.to("cpu"), meta)


def avatar_meta(model: Avat3rNet, model_meta: dict, views: int) -> dict[str, str]:
    """An avatar's metadata: format, the checkpoint it needs (path + sha256) and its expression space."""
    cfg = model.cfg
    return {"format": FORMAT, "version": str(VERSION), "checkpoint_path": model_meta.get("path", ""),
            "checkpoint_sha256": model_meta.get("sha256", ""), "expression_space": cfg.expr_space,
            "expression_dim": str(cfg.expr_dim), "views": str(views), "image_size": str(cfg.image_size)}


PACKAGE_PREFIX = "package:"  # a checkpoint_path relative to the stages.model package (the shipped weights)


def portable_checkpoint_ref(checkpoint: str | Path, avatar_dir: Path) -> str:
    """How an avatar file records its checkpoint without naming this machine's folders: the shipped weights as
    `package:weights` (relative to stages/model), any other checkpoint relative to the avatar's own folder.
    The sha256 beside it is what identifies the weights; the path is only a hint for finding them."""
    ckpt = Path(checkpoint).resolve()
    package = DEFAULT_CHECKPOINT.parent.resolve()
    if ckpt == package or package in ckpt.parents:
        return PACKAGE_PREFIX + ckpt.relative_to(package).as_posix()
    return Path(os.path.relpath(ckpt, Path(avatar_dir).resolve())).as_posix()


def recorded_checkpoint(ref: str, avatar_path: Path) -> Path | None:
    """The checkpoint an avatar's record points at: `package:...`, a path relative to the avatar's folder, or
    (older avatar files) an absolute path; None when there is no record."""
    if not ref:
        return None
    if ref.startswith(PACKAGE_PREFIX):
        return DEFAULT_CHECKPOINT.parent / ref[len(PACKAGE_PREFIX):]
    path = Path(ref)
    return path if path.is_absolute() else Path(avatar_path).parent / path


def save_avatar(path: str | Path, avatar: Avatar) -> None:
    c = avatar.cameras
    tensors = {"tokens": avatar.tokens, "images": avatar.images, "pos": avatar.pos, "conf": avatar.conf,
               "masks": avatar.masks, "cam_c2w": c.c2w, "cam_intrinsics": torch.stack([c.fx, c.fy, c.cx, c.cy], 1)}
    meta = dict(avatar.meta)
    meta["camera_size"] = json.dumps([c.width, c.height])
    if meta.get("checkpoint_path"):
        meta["checkpoint_path"] = portable_checkpoint_ref(meta["checkpoint_path"], Path(path).parent)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_avatar(path: str | Path) -> Avatar:
    path = Path(path)
    if not path.is_file():
        raise BadInput("avatar file not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadInput(f"not a readable safetensors file ({exc})", path) from exc
    if meta.get("format") != FORMAT:
        raise BadInput("not an avat3r avatar (no avatar metadata); make one with `avat3r reconstruct`", path)
    if int(meta.get("version", "0")) > VERSION:
        raise BadInput(f"avatar format version {meta['version']} is newer than this toolkit's ({VERSION})", path)
    need = {"tokens", "images", "pos", "conf", "masks", "cam_c2w", "cam_intrinsics"}
    if not need <= tensors.keys():
        raise BadInput(f"avatar is missing tensors {sorted(need - tensors.keys())}", path)
    if any(not torch.isfinite(t).all() for t in tensors.values()):
        raise BadInput("avatar contains NaN or Inf values", path)
    w, h = json.loads(meta["camera_size"])
    k = tensors["cam_intrinsics"]
    cams = Cameras(tensors["cam_c2w"], k[:, 0], k[:, 1], k[:, 2], k[:, 3], w, h)
    return Avatar(tensors["tokens"], tensors["images"], tensors["pos"], tensors["conf"], tensors["masks"], cams, meta)


def resolve_checkpoint(avatar: Avatar, avatar_path: Path, checkpoint: Path | None) -> Path:
    """The checkpoint to drive an avatar with: the one given, else the one it was made with (if it is still
    there), else the shipped one; refuse a checkpoint whose hash differs from the avatar's record."""
    recorded = avatar.meta.get("checkpoint_path", "")
    if checkpoint is None:
        found = recorded_checkpoint(recorded, avatar_path)
        checkpoint = found if found is not None and found.exists() else DEFAULT_CHECKPOINT
    want = avatar.meta.get("checkpoint_sha256", "")
    have = checkpoint_sha256(checkpoint)
    if want and have != want:
        raise BadInput(f"avatar was made with checkpoint {recorded or '?'} (sha256 {want[:12]}…), not {checkpoint} "
                       f"(sha256 {have[:12]}…); pass the right --checkpoint", avatar_path)
    return checkpoint


class AvatarDriver:
    """A loaded avatar plus its network on one device: expression code in, Gaussians out.

    On a GPU (`fast`, the default there) a frame runs in bf16 and (`graph`) as a CUDA graph recorded on the
    first call: the per-frame path is launch-bound, and the graph replays all its kernels at once."""

    def __init__(self, avatar: Avatar, model: Avat3rNet, fast: bool | None = None, graph: bool = True,
                 compile: bool = False):
        self.avatar, self.model = avatar, model
        dev = next(model.parameters()).device
        self.fast = dev.type == "cuda" if fast is None else fast
        # fast frames run a bf16 copy of the network: autocast would cast every weight again each frame
        self._net = copy.deepcopy(model).to(torch.bfloat16) if self.fast else model
        decode = self._decode
        if compile and self.fast:  # inductor fuses the upsampler's elementwise work (seconds to compile)
            decode = torch.compile(self._decode, dynamic=False)
        if graph and self.fast and dev.type == "cuda":
            decode = LazyGraph(decode, "the avatar's frame")
        self._frame = decode
        with torch.no_grad():
            state, _ = model.skip_inputs(avatar.images[None].to(dev), avatar.pos[None].to(dev),
                                         avatar.conf[None].to(dev), avatar.masks[None].to(dev),
                                         avatar.cameras.to(dev))
        state.tokens = avatar.tokens.to(dev)
        self.state: IdentityState = state
        self.device = dev
        with torch.no_grad():
            self._kept = kept_pixels(self._net, state)  # the expression-independent part of every frame

    @property
    def expression_dim(self) -> int:
        return self.model.cfg.expr_dim

    @torch.no_grad()
    def gaussians(self, code: np.ndarray | torch.Tensor) -> Gaussians:
        if torch.is_tensor(code):
            code_t = code.detach().to(self.device, torch.float32).reshape(1, -1)
        else:
            code_t = torch.as_tensor(np.asarray(code, np.float32)).reshape(1, -1).to(self.device)
        return Gaussians(*self._frame(code_t))

    @property
    def graphed(self) -> bool:
        """Whether frames replay a recorded CUDA graph (after the first frame; False when recording failed)."""
        return isinstance(self._frame, LazyGraph) and self._frame.recorded

    def _decode(self, code: torch.Tensor) -> tuple[torch.Tensor, ...]:
        g = decode_kept(self._net, self.state, code, self._kept)
        return g.means, g.quats, g.log_scales, g.opacity_logits, g.colors


def open_avatar(path: str | Path, checkpoint: str | Path | None = None,
                device: torch.device | str = "cpu", fast: bool | None = None, compile: bool = False) -> AvatarDriver:
    path = Path(path)
    avatar = load_avatar(path)
    ckpt = resolve_checkpoint(avatar, path, Path(checkpoint) if checkpoint else None)
    model, _ = load_model(ckpt, device)
    if model.cfg.expr_dim != avatar.expression_dim or model.cfg.width != avatar.tokens.shape[-1]:
        raise BadInput("avatar does not fit the checkpoint's network (expression width or token width differs)", path)
    return AvatarDriver(avatar, model, fast, compile=compile)
