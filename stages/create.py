"""Avatar creation for services: photos already on the device → an avatar, in tens of milliseconds on a GPU.

`avat3r reconstruct` is a one-shot command: it hashes the capture for the priors cache, resizes on the CPU and
writes files, and its process start dwarfs the compute. A service that creates many avatars keeps one
`AvatarCreator`: the built-in prior and the identity encoder run on device tensors, and on a GPU they are
recorded together as one CUDA graph per view count (the prior alone is ~3,000 small kernels, so launching
them is most of its eager time), in bf16 like the per-frame path. The one host synchronisation, the scene's
bounding sphere (a 3×3 solve on the CPU), runs eagerly before each replay.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stages.avatar import Avatar, avatar_meta
from stages.cameras import Cameras
from stages.graphs import LazyGraph
from stages.model import Avat3rNet
from stages.priors.builtin import BuiltinSettings, builtin_priors
from stages.priors.geometry import scene_bounds


class AvatarCreator:
    """images (V, H, W, 3) in [0, 1], masks (V, H, W) and V cameras, at the model's resolution and on its
    device → `Avatar` whose tensors stay on that device (drive it with `AvatarDriver`; `save_avatar` moves
    them to the CPU). `fast` (default: on CUDA) runs bf16 and, with `graph`, records a CUDA graph per view
    count on its first use."""

    def __init__(self, model: Avat3rNet, model_meta: dict | None = None, fast: bool | None = None,
                 graph: bool = True, settings: BuiltinSettings | None = None):
        if model.cfg.feat_dim > 0:
            raise ValueError("this network needs semantic features per view; make its avatars with `reconstruct`")
        self.model, self.meta = model, dict(model_meta or {})
        self.device = next(model.parameters()).device
        self.fast = self.device.type == "cuda" if fast is None else fast
        self.graph = graph
        self.settings = settings or BuiltinSettings()
        self._graphs: dict[tuple, LazyGraph] = {}  # one per (views, width, height)

    def _run(self, images: Tensor, masks: Tensor, c2w: Tensor, fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor,
             centre: Tensor, radius: Tensor, codes: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor]:
        cams = Cameras(c2w, fx, fy, cx, cy, width, height)
        pos, conf, _ = builtin_priors(images, masks, cams, self.settings, bounds=(centre, radius))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.fast, cache_enabled=False):
            state = self.model.encode_identity(images[None], pos[None], conf[None], masks[None], cams,
                                               input_codes=codes[None])
        return pos, conf, state.tokens.float()

    @torch.no_grad()
    def __call__(self, images: Tensor, masks: Tensor, cameras: Cameras, input_codes: Tensor | None = None) -> Avatar:
        """`input_codes` (V, E): the inputs' own expressions, read by a network with `input_codes` (neutral
        when not given)."""
        cfg = self.model.cfg
        V, H, W = masks.shape
        if (H != cfg.image_size or W != cfg.image_size or images.shape != (V, H, W, 3) or len(cameras) != V
                or (cameras.width, cameras.height) != (W, H)):
            raise ValueError(f"need V images (V, {cfg.image_size}, {cfg.image_size}, 3), masks and V cameras of that "
                             f"size; got {tuple(images.shape)}, {tuple(masks.shape)}, {len(cameras)} cameras of "
                             f"{cameras.width}x{cameras.height}")
        cams = cameras.to(self.device, torch.float32)
        images, masks = images.to(self.device, torch.float32), masks.to(self.device, torch.float32)
        centre, radius = scene_bounds(cams, masks)
        codes = (torch.zeros(V, cfg.expr_dim, device=self.device) if input_codes is None
                 else input_codes.to(self.device, torch.float32))
        args = (images, masks, cams.c2w, cams.fx, cams.fy, cams.cx, cams.cy, centre.float(), radius.float(), codes)
        size = (cams.width, cams.height)

        def run(*a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            return self._run(*a, *size)

        if self.fast and self.graph and self.device.type == "cuda":
            run = self._graphs.setdefault((V, *size), LazyGraph(run, f"creating a {V}-view avatar"))
        pos, conf, tokens = run(*args)
        return Avatar(tokens, images, pos, conf, masks, cams, avatar_meta(self.model, self.meta, V))

    def graphed(self, views: int) -> bool:
        """Whether creating `views`-view avatars replays a recorded CUDA graph."""
        size = self.model.cfg.image_size
        return (views, size, size) in self._graphs and self._graphs[(views, size, size)].recorded
