"""Driving an avatar: camera paths framed like the avatar's own inputs, and the per-frame render loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from stages.avatar import Avatar, AvatarDriver
from stages.cameras import Cameras, look_at, make_cameras, read_transforms, spherical_eye
from stages.errors import BadInput


def framing(avatar: Avatar, size: int) -> tuple[float, float]:
    """Camera distance and focal (for `size` pixels) that frame the head as the input photos did."""
    c = avatar.cameras
    radius = float(c.centers().norm(dim=-1).mean())
    focal = float((c.fx / c.width).mean()) * size
    return radius, focal


def camera_path(spec: str, n_frames: int, avatar: Avatar, size: int) -> Cameras:
    """`front`: a fixed frontal camera; `orbit`: a smooth swing of ±40° around the face; a path to a
    transforms.json: its cameras, cycled over the frames (frame i uses camera i mod F)."""
    radius, focal = framing(avatar, size)
    t = torch.arange(n_frames, dtype=torch.float32)
    if spec == "front":
        az, el = torch.zeros(n_frames), torch.full((n_frames,), 5.0)
    elif spec == "orbit":
        period = max(n_frames, 2)
        az = 40.0 * torch.sin(2 * np.pi * t / period)
        el = 5.0 + 8.0 * torch.sin(4 * np.pi * t / period)
    else:
        path = Path(spec)
        if not path.exists():
            raise BadInput("--camera must be front, orbit, follow (with --driving) or a transforms.json path; "
                           "no such file", path)
        cams = read_transforms(path).cameras()
        idx = torch.arange(n_frames) % len(cams)
        return cams[idx]
    return make_cameras(look_at(spherical_eye(az, el, radius)), focal, size)


def render_frames(driver: AvatarDriver, codes: np.ndarray, cameras: Cameras,
                  background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                  photo: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield uint8 (rgb (H, W, 3), alpha (H, W)) images for code i seen from camera i; `photo` sharpens each
    with the nearest input photo where they agree (stages.render.photo_detail). They are quantised where they
    were rendered: on a GPU that moves a quarter of the bytes to the host and keeps the per-pixel conversion
    off the CPU, which the video encoder needs."""
    from stages.render.photo_detail import InputPhotos, render_sharpened

    bg = torch.tensor(background, dtype=torch.float32, device=driver.device)
    cams = cameras.to(driver.device)
    photos = InputPhotos.of(driver.avatar, driver.device) if photo else None
    for i in range(len(codes)):
        g = driver.gaussians(codes[i])
        with torch.no_grad():
            rgb, out = render_sharpened(g, cams[i], bg, photos, depth=False)
            # the rounding of stages.io.to_uint8, on the device
            rgba = torch.cat([rgb, out.alpha[0]], dim=-1).clamp(0, 1).mul(255.0).add(0.5).to(torch.uint8)
        rgba = rgba.cpu().numpy()
        yield rgba[..., :3], rgba[..., 3]
