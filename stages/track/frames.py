"""Frames to track: a video file (read with imageio's ffmpeg), a folder of images or a single image, streamed
one frame at a time (a long video never sits in memory) and optionally resampled to another frame rate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import BadInput
from stages.track.landmarker import as_rgb_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg")
IMAGE_FPS = 25.0  # frame rate assumed for image folders unless --fps says otherwise


def natural_key(path: Path) -> list[object]:
    """Sort frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _to_rgb8(img: np.ndarray, path: Path) -> np.ndarray:
    """RGB uint8 like the landmarker's own conversion, also taking 16-bit and grey + alpha images."""
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 2:  # grey + alpha: the grey
        img = img[..., :1]
    try:
        return as_rgb_uint8(img)
    except ValueError:
        raise BadInput(f"unsupported image shape {img.shape}", path) from None


@dataclass
class FrameSource:
    """Where frames come from. `fps` is the output frame rate; `count` the number of output frames when known
    in advance (image folders, most videos)."""

    path: Path
    images: list[Path] | None  # None: a video
    source_fps: float
    fps: float
    count: int | None

    @property
    def is_video(self) -> bool:
        return self.images is None

    def __iter__(self) -> Iterator[np.ndarray]:
        """RGB uint8 (H, W, 3) frames at `fps`: source frames are repeated or skipped to the nearest in time."""
        raw = self._video_frames() if self.images is None else (self._read_image(p) for p in self.images)
        if self.fps == self.source_fps:
            yield from raw
            return
        k = 0  # next output frame; it shows the source frame whose time slot holds k / fps
        for i, frame in enumerate(raw):
            end = (i + 0.5) / self.source_fps
            while k / self.fps < end - 1e-9:
                yield frame
                k += 1

    def _read_image(self, path: Path) -> np.ndarray:
        import imageio.v3 as iio

        try:
            return _to_rgb8(iio.imread(path), path)
        except BadInput:
            raise
        except Exception as exc:  # imageio raises many types for corrupt files
            raise BadInput(f"cannot read image ({exc.__class__.__name__})", path) from exc

    def _video_frames(self) -> Iterator[np.ndarray]:
        import imageio.v2 as imageio

        try:
            reader = imageio.get_reader(self.path, format="FFMPEG")
        except Exception as exc:
            raise BadInput(f"cannot read video ({exc.__class__.__name__})", self.path) from exc
        try:
            for frame in reader:
                yield _to_rgb8(frame, self.path)
        except (OSError, RuntimeError) as exc:
            raise BadInput(f"video is corrupt or truncated ({exc.__class__.__name__})", self.path) from exc
        finally:
            reader.close()


def _video_meta(path: Path) -> tuple[float, int | None]:
    """(frames per second, frame count or None) of a video, or BadInput when ffmpeg cannot open it."""
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as exc:
        raise BadInput(f"cannot read video ({exc.__class__.__name__})", path) from exc
    try:
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or 0.0)
        try:
            n = reader.count_frames()
        except Exception:  # streams without a usable frame count
            n = None
    finally:
        reader.close()
    if not np.isfinite(fps) or fps <= 0:
        raise BadInput("video has no usable frame rate; pass --fps", path)
    return fps, n


def open_frames(path: str | Path, fps: float | None = None) -> FrameSource:
    """A video, a folder of images (natural sort order) or one image, at `fps` (default: the video's own rate,
    or 25 for images; for images --fps only sets the timing, every image is one frame)."""
    path = Path(path)
    if fps is not None and (not np.isfinite(fps) or fps <= 0):
        raise BadInput(f"--fps must be positive, got {fps}")
    if not path.exists():
        raise BadInput("input video or images not found", path)
    if path.is_dir():
        images = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                        key=natural_key)
        if not images:
            raise BadInput(f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})", path)
        rate = fps or IMAGE_FPS
        return FrameSource(path, images, rate, rate, len(images))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        rate = fps or IMAGE_FPS
        return FrameSource(path, [path], rate, rate, 1)
    src_fps, n = _video_meta(path)
    out_fps = fps or src_fps
    count = n
    if n is not None and out_fps != src_fps:  # output k exists while k / out_fps < (n - 0.5) / src_fps
        count = int(np.ceil((n - 0.5) * out_fps / src_fps - 1e-9))
    return FrameSource(path, None, src_fps, out_fps, count)
