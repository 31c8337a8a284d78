"""Atomic file writing and image I/O shared by every stage.

A failed run must leave no partial output: everything is written to a temporary name in the target folder
and renamed into place only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import BadInput


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(target, backup)
            os.replace(tmp, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, indented for people to read."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON, turning a missing or malformed file into BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput("file not found", path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"not valid JSON ({exc})", path) from exc


def read_image(path: str | Path) -> np.ndarray:
    """Read an 8/16-bit PNG/JPEG as float32 in [0, 1], shape (H, W, C) with C in {1, 3, 4}."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise BadInput("image not found", path)
    try:
        img = iio.imread(path)
    except Exception as exc:  # imageio raises many types for corrupt files
        raise BadInput(f"cannot read image ({exc.__class__.__name__})", path) from exc
    img = np.asarray(img)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    img = img.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise BadInput(f"unsupported image shape {img.shape}", path)
    if img.shape[2] == 2:  # grey + alpha
        img = np.concatenate([img[..., :1].repeat(3, axis=2), img[..., 1:]], axis=2)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 with rounding."""
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a float [0,1] or uint8 image (H, W[, C]) as PNG, atomically."""
    import imageio.v3 as iio

    if img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, img, extension=Path(path).suffix or ".png")
