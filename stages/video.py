"""Video output that overlaps encoding with rendering.

imageio pipes raw frames to an ffmpeg process; writing a frame blocks whenever ffmpeg is behind, and on a GPU
that wait would stall the next frame's rendering. `BackgroundWriter` moves the writes to a thread behind a
short queue: the renderer only waits when the encoder is a whole queue behind, memory stays bounded, and an
error in the writer is raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

_STOP = object()


class BackgroundWriter:
    """Calls `write(frame)` for every `put(frame)` in a background thread, in order. Use as a context manager;
    leaving it waits for the queue to drain and re-raises the writer's error, if any."""

    def __init__(self, write: Callable[[np.ndarray], None], depth: int = 8):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not _STOP:
            if self._error is None:  # after a failure keep draining, so put() never blocks forever
                try:
                    self._write(frame)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread in close()
                    self._error = exc

    def put(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mp4_writer(path: str | Path, fps: float, quality: int = 8):
    """An imageio ffmpeg writer for H.264 mp4 that plays everywhere (yuv420p) and takes any frame size."""
    import imageio.v2 as imageio

    return imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=quality,
                              macro_block_size=1, pixelformat="yuv420p")
