"""Lazy access to the files datasets ship in: members of zip archives (Ava256) and frames of videos (NeRSemble).

Open handles live in module-level caches keyed by process id, never on the dataset objects, so datasets stay
picklable and each DataLoader worker opens its own handles on first use (a zip or video handle shared across a
fork would have its file position moved under it by the other process)."""

from __future__ import annotations

import io
import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import BadInput

MAX_OPEN_VIDEOS = 32  # video readers hold an ffmpeg process each; the least recently used ones are closed
_zips: dict[tuple[int, str], zipfile.ZipFile] = {}
_videos: OrderedDict[tuple[int, str], Any] = OrderedDict()


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """This process's open handle on a zip archive."""
    key = (os.getpid(), str(path))
    zf = _zips.get(key)
    if zf is None:
        if not Path(path).is_file():
            raise BadInput("archive not found", path)
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise BadInput(f"not a valid zip archive ({exc})", path) from exc
        _zips[key] = zf
    return zf


def read_member(path: str | Path, member: str) -> bytes:
    """The bytes of one zip member; BadInput naming the archive and member when it is missing."""
    zf = open_zip(path)
    try:
        return zf.read(member)
    except KeyError:
        raise BadInput(f"no member {member!r} in the archive", path) from None


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode PNG/JPEG/AVIF bytes to float32 (H, W, C) in [0, 1] (C = 1, 3 or 4) with Pillow, which reads AVIF
    from version 11.3 on (the `datasets` extra pins it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        hint = " (AVIF needs Pillow >= 11.3: pip install 'avat3r[datasets]')" if where.endswith(".avif") else ""
        raise BadInput(f"cannot decode image{hint}: {exc}", where) from exc
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0 if arr.dtype == np.uint8 else 1.0
    arr = arr.astype(np.float32) / scale
    return arr[..., None] if arr.ndim == 2 else arr


def read_zip_image(path: str | Path, member: str) -> np.ndarray:
    """Decode one image member of a zip archive."""
    return decode_image(read_member(path, member), f"{path}:{member}")


def _video(path: str | Path) -> Any:
    import imageio.v2 as iio2

    key = (os.getpid(), str(path))
    reader = _videos.get(key)
    if reader is not None:
        _videos.move_to_end(key)
        return reader
    if not Path(path).is_file():
        raise BadInput("video not found", path)
    try:
        reader = iio2.get_reader(str(path), format="ffmpeg")  # type: ignore[arg-type]
    except Exception as exc:  # imageio raises several types for unreadable files
        raise BadInput(f"cannot open video ({exc.__class__.__name__}: {exc})", path) from exc
    _videos[key] = reader
    while len(_videos) > MAX_OPEN_VIDEOS:
        _, old = _videos.popitem(last=False)
        old.close()
    return reader


def read_video_frame(path: str | Path, index: int) -> np.ndarray:
    """Frame `index` of a video as float32 (H, W, 3) in [0, 1]. imageio's ffmpeg reader reads forward from its
    position and re-seeks (restarting ffmpeg with -ss) when asked for an earlier frame or one far ahead, so
    reading a video's frames in order is cheap and random access is correct."""
    reader = _video(path)
    try:
        frame = reader.get_data(int(index))
    except IndexError:
        raise BadInput(f"the video has no frame {index}", path) from None
    except Exception as exc:
        raise BadInput(f"cannot read frame {index} ({exc.__class__.__name__}: {exc})", path) from exc
    return np.asarray(frame, np.float32)[..., :3] / 255.0


def video_length(path: str | Path) -> int:
    """Number of frames of a video (counted by decoding once if the container does not say)."""
    reader = _video(path)
    n = reader.count_frames()
    return int(n)


def close_all() -> None:
    """Close this process's handles (tests, and long runs that switch datasets)."""
    pid = os.getpid()
    for key in [k for k in _zips if k[0] == pid]:
        _zips.pop(key).close()
    for key in [k for k in _videos if k[0] == pid]:
        _videos.pop(key).close()
