"""Driving an avatar from a face video: track it, then pair the codes with cameras that follow the actor's head
(or any `animate --camera` path), and optionally show the driving video beside the render."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.track.frames import FrameSource, open_frames
from stages.track.pose import pose_cameras
from stages.track.tracker import track

Progress = Callable[[Iterator, int | None], Iterator]


def follow_cameras(transforms: np.ndarray, avatar: object, size: int) -> Cameras:
    """Cameras reproducing the actor's head rotations, at the distance and focal that frame the avatar like
    `animate --camera front` (the framing stages.animate.camera_path uses, so both always agree)."""
    from stages.animate import framing

    distance, focal = framing(avatar, size)
    return pose_cameras(transforms, distance, focal, size)


def track_driving(video: Path, driver: object, camera: str | None, size: int, fps: float | None, smooth: float,
                  progress: Progress | None = None) -> tuple[FrameSource, np.ndarray, Cameras]:
    """(frame source, codes (T, 52), cameras (T)) for driving `driver`'s avatar with a face video. `camera` None
    or "follow" follows the actor's head; anything else is an `animate --camera` spec."""
    from stages.animate import camera_path

    dim = int(driver.expression_dim)  # type: ignore[attr-defined]
    if dim != 52:
        raise BadInput(f"--driving produces ARKit-52 codes, but this avatar's expression space has {dim} values")
    source = open_frames(video, fps)
    wrap = None if progress is None else (lambda it: progress(it, source.count))
    result = track(source, smooth=smooth, progress=wrap)
    avatar = driver.avatar  # type: ignore[attr-defined]
    if camera is None or camera == "follow":
        cams = follow_cameras(result.transforms, avatar, size)
    else:
        cams = camera_path(camera, len(result.codes), avatar, size)
    return source, result.codes, cams


def _fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    """Resize an RGB uint8 frame to `height` rows keeping its aspect, with an even width (for yuv420p video)."""
    import cv2

    width = max(2, int(round(frame.shape[1] * height / frame.shape[0] / 2)) * 2)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def beside(source: Iterable[np.ndarray], frames: Iterable[tuple[np.ndarray, np.ndarray]]
           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """uint8 (rgb, alpha) frames with the driving frame (opaque) left of each rendered one, at its height."""
    for drv, (rgb, alpha) in zip(source, frames, strict=False):
        left = _fit_height(drv, rgb.shape[0]).astype(np.uint8)
        yield (np.concatenate([left, rgb], axis=1),
               np.concatenate([np.full(left.shape[:2], 255, np.uint8), alpha], axis=1))
