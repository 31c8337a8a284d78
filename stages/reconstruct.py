"""Capture → avatar: load the network, bring the capture to its resolution, get the priors (cached in the
capture folder when fresh), and run the identity encoder once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from stages.avatar import Avatar, create_avatar
from stages.capture import read_capture
from stages.capture.input_codes import input_codes
from stages.errors import BadInput
from stages.model.checkpoint import load_model
from stages.model.network import gaussian_pixels


def reconstruct(capture_dir: str | Path, checkpoint: str | Path | None = None, device: torch.device | str = "cpu",
                prior_backend: str | None = None, prior_checkpoint: Path | None = None, features: str = "none",
                sapiens: Path | None = None, log=lambda msg: None, stats: dict | None = None,
                refine: int = 0, refine_lr: float | None = None, track: Callable | None = None) -> Avatar:
    """`stats`, when given, receives `gaussians`: how many input pixels the model keeps as Gaussians.
    `refine` > 0 then tunes the avatar to its own photos for that many steps (`stages.refine`)."""
    from stages.priors import load_or_compute_priors

    model, meta = load_model(checkpoint, device)
    cfg = model.cfg
    capture = read_capture(capture_dir)
    if len(capture) > cfg.max_views:
        raise BadInput(f"{len(capture)} views, but this model takes 1 to {cfg.max_views}", Path(capture_dir))
    if cfg.feat_dim > 0 and features == "none":
        raise BadInput("this checkpoint needs semantic features: pass --features sapiens --sapiens FILE",
                       Path(checkpoint or "shipped checkpoint"))
    priors = load_or_compute_priors(capture, backend=prior_backend, resolution=cfg.image_size, device=device,
                                    checkpoint=prior_checkpoint, features=features, sapiens=sapiens)
    cap = capture.resized(cfg.image_size)
    fg = cap.masks > 0.5
    share = float(priors.conf[fg].ge(0.5).float().mean()) * 100 if fg.any() else 0.0
    threshold = cfg.conf_threshold if cfg.use_pos_prior else float("-inf")
    kept = int(gaussian_pixels(cfg, cap.masks, priors.conf).sum())
    if stats is not None:
        stats["gaussians"] = kept
    log(f"priors: {priors.meta.get('backend', prior_backend)}, {share:.0f}% of the foreground confident; the model "
        f"keeps {kept:,} pixels as Gaussians (confidence >= {threshold:g})")
    feat = priors.feat if cfg.feat_dim > 0 else None
    codes = input_codes(capture, cfg, log) if cfg.input_codes or refine > 0 else None
    avatar = create_avatar(model, meta, cap.images, cap.masks, cap.cameras, priors.pos, priors.conf, feat,
                           codes if cfg.input_codes else None)
    if refine > 0:
        from stages.refine import refine_avatar

        avatar = refine_avatar(model, avatar, codes, refine, refine_lr, log=log, track=track)
    return avatar
