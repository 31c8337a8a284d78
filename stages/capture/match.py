"""Self-reenactment cameras: each driving frame's own camera, so the avatar lands on top of the actor.

`animate --driving VIDEO --match` and `render --driving VIDEO` use these. The face landmarker tracks the clip
(VIDEO mode); one focal length for the whole clip is estimated from up to FOCAL_FRAMES evenly spread frames by
the same joint solve `prepare` uses for photos (`stages.capture.face_cameras`), then every frame's head pose is
a PnP solve at that focal. The cameras live in the head-centred metric world of an avatar made from photos or a
video without cameras (`prepare`'s face path), so such an avatar is seen exactly as the actor was filmed.
Frames without a face reuse the nearest tracked frame's camera and code. The output is the video's own
resolution, reduced so its longer side is at most `max_side` (intrinsics scaled to match).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.track.frames import FrameSource
from stages.track.landmarker import detect, open_landmarker
from stages.track.one_euro import one_euro
from stages.track.tracker import fill_missing, smoothing_settings

FOCAL_FRAMES = 40


@dataclass
class MatchedDrive:
    """Per driving frame: ARKit code, camera (head-centred metric world), and whether a face was found."""

    codes: np.ndarray  # (T, 52)
    cameras: Cameras  # T cameras at the output size
    found: np.ndarray  # (T,) bool
    vfov_deg: float
    residual_px: float  # RMS reprojection error of the rigid landmarks over the found frames, output pixels


def match_driving(source: FrameSource, smooth: float = 1.0, max_side: int = 1024,
                  progress: Callable[[Iterator], Iterator] | None = None) -> MatchedDrive:
    """Track `source` and solve every frame's camera (see the module docstring)."""
    from stages.capture.face_cameras import solve_face_cameras

    lms, codes, found, size = [], [], [], None
    frames: Iterator = iter(source)
    if progress is not None:
        frames = progress(frames)
    with open_landmarker(video=True) as lm, open_landmarker() as still:
        for i, frame in enumerate(frames):
            size = (frame.shape[1], frame.shape[0])
            face = detect(lm, frame, int(round(i * 1000.0 / source.fps)) if source.fps <= 1000 else i)
            if face is None:  # tracking lost after a cut or a fast turn: detect afresh
                face = detect(still, frame)
            found.append(face is not None)
            lms.append(face.landmarks[:, :2] if face is not None else np.zeros((478, 2), np.float32))
            codes.append(face.blendshapes if face is not None else np.zeros(52, np.float32))
    if size is None:
        raise BadInput("no frames could be read", source.path)
    found_arr = np.array(found)
    if not found_arr.any():
        raise BadInput(f"no face found in the driving video ({len(found)} frames)", source.path)
    lm_arr = fill_missing(np.stack(lms).reshape(len(lms), -1), found_arr).reshape(len(lms), -1, 2)
    code_arr = fill_missing(np.stack(codes), found_arr)
    settings = smoothing_settings(smooth)
    if settings is not None:
        code_arr = one_euro(code_arr, source.fps, *settings)
        lm_arr = one_euro(lm_arr.reshape(len(lm_arr), -1), source.fps, *settings).reshape(lm_arr.shape)
    dets = [_Landmarks(p) for p in lm_arr]
    idx = np.flatnonzero(found_arr)
    pick = idx[np.linspace(0, len(idx) - 1, min(FOCAL_FRAMES, len(idx))).round().astype(int)]
    joint = solve_face_cameras([dets[i] for i in pick], [size] * len(pick))
    solved = solve_face_cameras(dets, [size] * len(dets), focal_px=float(joint.fy[0]))
    w, h = size
    scale = min(1.0, max_side / max(w, h))
    ow, oh = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    sx, sy = ow / w, oh / h
    n = len(dets)
    cams = Cameras(torch.tensor(solved.c2w, dtype=torch.float32),
                   torch.tensor(solved.fx * sx, dtype=torch.float32), torch.tensor(solved.fy * sy, dtype=torch.float32),
                   torch.tensor(solved.cx * sx, dtype=torch.float32), torch.tensor(solved.cy * sy, dtype=torch.float32),
                   ow, oh)
    assert len(cams) == n
    res = float(np.sqrt(np.mean(solved.residual_px[found_arr] ** 2))) * scale
    return MatchedDrive(np.clip(code_arr, 0, 1).astype(np.float32), cams, found_arr, joint.vfov_deg, res)


@dataclass
class _Landmarks:
    landmarks: np.ndarray


def match_driving_video(video: str | Path, expression_dim: int, owner: str, fps: float | None = None,
                        smooth: float = 1.0, track: Callable[[Iterator, int], Iterator] | None = None
                        ) -> tuple[FrameSource, MatchedDrive]:
    """Open a driving video and match it (`match_driving`), for an `owner` ("avatar", "scene") whose expression
    space must be ARKit-52; `track(frames, count)` reports progress. Shared by `animate --match` and
    `render --driving`."""
    from stages.track.frames import open_frames

    if int(expression_dim) != 52:
        raise BadInput(f"--driving produces ARKit-52 codes, but this {owner}'s expression space has "
                       f"{expression_dim} values")
    source = open_frames(video, fps)
    progress = None if track is None else (lambda it: track(it, source.count))
    return source, match_driving(source, smooth, progress=progress)


def overlay(source: Iterator[np.ndarray], frames: Iterator[tuple[np.ndarray, np.ndarray]]
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The render (premultiplied: rendered over black) composited over its driving frame, opaque."""
    import cv2

    for drv, (rgb, alpha) in zip(source, frames, strict=False):
        if drv.shape[:2] != rgb.shape[:2]:
            drv = cv2.resize(drv, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        a = alpha[..., None].astype(np.float32) / 255.0
        out = rgb.astype(np.float32) + drv.astype(np.float32) * (1.0 - a)
        yield np.clip(out + 0.5, 0, 255).astype(np.uint8), np.full(alpha.shape, 255, np.uint8)
