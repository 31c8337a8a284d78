"""`track` smooths videos, not folders of photos: unrelated photos are not a motion, and smoothing across them
pulls each reading toward its neighbours (MediaPipe is replaced by fixed readings, so this runs everywhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import stages.track.tracker as tracker
from stages.track.frames import FrameSource


def _readings(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Alternating neutral and full-smile readings, as from a folder of unrelated portraits."""
    out = []
    for i in range(n):
        code = np.zeros(52, np.float32)
        code[23] = code[24] = 0.98 if i % 2 else 0.0  # mouthSmileLeft / Right
        out.append((code, np.eye(4)))
    return out


@pytest.fixture
def fake_landmarker(monkeypatch):
    modes: list[bool] = []

    def detect_frames(frames, fps, model=None, min_confidence=0.5, video=True):
        modes.append(video)
        yield from _readings(6)

    monkeypatch.setattr(tracker, "detect_frames", detect_frames)
    return modes


def _source(images: bool) -> FrameSource:
    paths = [Path(f"{i}.png") for i in range(6)] if images else None
    return FrameSource(Path("src"), paths, 25.0, 25.0, 6)


def test_image_folders_are_not_smoothed_by_default(fake_landmarker):
    result = tracker.track(_source(images=True))
    assert np.allclose(result.codes[:, 23], [0.0, 0.98, 0.0, 0.98, 0.0, 0.98], atol=1e-6)
    assert fake_landmarker == [False], "photos must be read one by one (IMAGE mode), not tracked as a video"


def test_videos_are_smoothed_by_default_and_photos_on_request(fake_landmarker):
    video = tracker.track(_source(images=False))
    assert video.codes[1, 23] < 0.9  # the filter pulls a one-frame smile toward its neighbours
    asked = tracker.track(_source(images=True), smooth=1.0)
    assert np.allclose(asked.codes, video.codes)
    assert fake_landmarker == [True, False]
