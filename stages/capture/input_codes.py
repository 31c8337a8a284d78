"""Each input photo's own expression code, for networks that read it (`ModelConfig.input_codes`).

A capture that records them (per-frame `expression` in transforms.json: synthetic captures, photos prepared
without cameras) gives them as they are. Otherwise they come from the face itself, as at training time: the
face landmarker's ARKit blendshapes of every input image (video clips were tracked the same way). Where that
is impossible (no landmarker installed, no face in a view, another expression space) the view counts as
neutral, and the log says so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from stages.capture import Capture
from stages.errors import BadInput
from stages.model.config import ModelConfig


def recorded_codes(capture: Capture, cfg: ModelConfig) -> Tensor | None:
    """The capture's own per-frame codes when they are in the network's expression space, else None."""
    ex = capture.expressions
    if ex is None or ex.shape[1] != cfg.expr_dim or capture.expression_space not in (None, cfg.expr_space):
        return None
    return ex.float()


def landmarker_codes(images: Tensor) -> tuple[Tensor, int]:
    """(V, 52) ARKit blendshapes of the most prominent face of each image (V, H, W, 3) in [0, 1], zeros where
    there is none, and how many views had a face. BadInput when the landmarker is not installed."""
    from stages.track.tracker import detect_frames

    results = list(detect_frames(images.cpu().numpy(), fps=1.0, video=False))  # separate photos: IMAGE mode
    codes = [r[0] if r is not None else np.zeros(52, np.float32) for r in results]
    return torch.from_numpy(np.stack(codes).astype(np.float32)), sum(r is not None for r in results)


def input_codes(capture: Capture, cfg: ModelConfig, log: Callable[[str], None] = lambda msg: None) -> Tensor:
    """(V, expr_dim): the inputs' own expressions, as well as they can be known (see the module's text)."""
    recorded = recorded_codes(capture, cfg)
    if recorded is not None:
        log("input expressions: recorded in the capture")
        return recorded
    neutral = torch.zeros(len(capture), cfg.expr_dim)
    if cfg.expr_space != "arkit52":
        log(f"input expressions: the capture records none in {cfg.expr_space}; the inputs count as neutral")
        return neutral
    try:
        codes, found = landmarker_codes(capture.images)
    except BadInput as exc:
        log(f"input expressions: {exc}; the inputs count as neutral")
        return neutral
    log(f"input expressions: from the face landmarker, a face in {found} of {len(capture)} views"
        + (" (the others count as neutral)" if found < len(capture) else ""))
    return codes
