"""The background video writer: frames arrive in order, and a failing writer fails the caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from stages.video import BackgroundWriter


def test_frames_are_written_in_order_off_the_calling_thread():
    seen, threads = [], set()

    def write(frame: np.ndarray) -> None:
        seen.append(int(frame[0]))
        threads.add(threading.current_thread().name)

    with BackgroundWriter(write, depth=2) as video:
        for i in range(50):
            video.put(np.array([i]))
    assert seen == list(range(50))
    assert threads == {"video-writer"}


def test_writer_errors_reach_the_caller():
    def write(frame: np.ndarray) -> None:
        if frame[0] == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # noqa: PT012 - the error may surface at put or at close
        with BackgroundWriter(write, depth=1) as video:
            for i in range(20):
                video.put(np.array([i]))
