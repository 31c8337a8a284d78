"""Tracking a face through frames: per-frame ARKit-52 codes and head transforms from MediaPipe's landmarker in
VIDEO mode, gaps (frames without a face) filled from their neighbours, then One-Euro smoothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import BadInput
from stages.track.frames import FrameSource
from stages.track.landmarker import detect, open_landmarker
from stages.track.one_euro import one_euro
from stages.track.pose import smooth_rotations

BASE_MIN_CUTOFF = 1.5  # Hz at --smooth 1: keeps the landmarker's frame-to-frame jitter out of still faces
DEFAULT_BETA = 1.0  # how quickly the cutoff opens for fast motion (blinks, a jaw drop) so they keep little lag


@dataclass
class Track:
    """A tracked sequence: `codes` (T, 52) ARKit weights, `transforms` (T, 4, 4) MediaPipe face-to-camera
    transforms, `found` (T,) whether frame t had a face (the others were filled), at `fps` frames per second."""

    codes: np.ndarray
    transforms: np.ndarray
    found: np.ndarray
    fps: float

    @property
    def missing(self) -> int:
        return int((~self.found).sum())


def fill_missing(values: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest frames with one (the first or
    last known value before or after the ends). `values` is (T, ...); `found` (T,) must hold at least one True."""
    values = np.array(values, np.float64)
    idx = np.flatnonzero(found)
    if len(idx) == len(values):
        return values
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    for c in range(flat.shape[1]):
        flat[:, c] = np.interp(t, idx, flat[idx, c])
    return flat.reshape(values.shape)


def smoothing_settings(smooth: float, beta: float = DEFAULT_BETA) -> tuple[float, float] | None:
    """(min cutoff Hz, beta) of the One-Euro filter for a --smooth strength, or None when smoothing is off."""
    if smooth < 0 or not np.isfinite(smooth):
        raise BadInput(f"--smooth must be 0 (off) or positive, got {smooth}")
    if beta < 0 or not np.isfinite(beta):
        raise BadInput(f"--beta must be 0 or positive, got {beta}")
    return None if smooth == 0 else (BASE_MIN_CUTOFF / smooth, beta)


def detect_frames(frames: Iterable[np.ndarray], fps: float, model: Path | None = None,
                  min_confidence: float = 0.5, video: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray] | None]:
    """Per frame, (ARKit code (52,), face transform (4, 4)) or None. A video runs the landmarker in VIDEO mode
    (it tracks the face from frame to frame, which is faster and steadier than detecting it every time);
    separate photos run in IMAGE mode, so no photo's result leans on the one before it."""
    with open_landmarker(model, video=video, min_confidence=min_confidence) as lm:
        for i, frame in enumerate(frames):
            stamp = (int(round(i * 1000.0 / fps)) if fps <= 1000 else i) if video else None
            face = detect(lm, frame, stamp)
            yield None if face is None else (face.blendshapes, face.transform)


def default_smooth(source: FrameSource) -> float:
    """--smooth when not given: 1 for a video; 0 for images, which are separate photos, not a motion to smooth
    (smoothing across unrelated photos pulls each toward its neighbours: a smile of 0.98 read as 0.60)."""
    return 1.0 if source.is_video else 0.0


def track(source: FrameSource, model: Path | None = None, smooth: float | None = None, beta: float = DEFAULT_BETA,
          min_confidence: float = 0.5, progress: Callable[[Iterator], Iterator] | None = None) -> Track:
    """Track every frame of `source`; a source without a face in any frame is bad input. `smooth` None picks
    `default_smooth(source)`."""
    settings = smoothing_settings(default_smooth(source) if smooth is None else smooth, beta)
    results = detect_frames(source, source.fps, model, min_confidence, video=source.is_video)
    if progress is not None:
        results = progress(results)
    codes, transforms, found = [], [], []
    for r in results:
        found.append(r is not None)
        codes.append(r[0] if r is not None else np.zeros(52, np.float32))
        transforms.append(r[1] if r is not None else np.eye(4))
    if not found:
        raise BadInput("no frames could be read", source.path)
    found_arr = np.array(found)
    if not found_arr.any():
        what = "video" if source.is_video else "image" if len(found) == 1 else "images"
        raise BadInput(f"no face found in the {what} ({len(found)} frame{'s' * (len(found) != 1)})", source.path)
    code_arr = fill_missing(np.stack(codes), found_arr)
    tf_arr = fill_missing(np.stack(transforms), found_arr)
    if settings is not None:
        code_arr = one_euro(code_arr, source.fps, *settings)
        tf_arr = smooth_rotations(tf_arr, source.fps, *settings)
    return Track(np.clip(code_arr, 0.0, 1.0).astype(np.float32), np.asarray(tf_arr, np.float64), found_arr,
                 source.fps)
