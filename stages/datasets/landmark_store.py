"""Where a video cache keeps the face landmarks detected on its frames and the landmarker's canonical face
(written by `python -m stages.datasets.face_landmarks`, read by the `video:` loader for `--video-prior facemesh`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.io import atomic_path
from stages.track.canonical_face import CanonicalFace

LANDMARKS_FILE = "face_landmarks.npz"
CANONICAL_FILE = "canonical_face.npz"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write through a temporary file (stages.io.atomic_path), so an interrupted run leaves no partial file."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def save_canonical_face(face: CanonicalFace, cache: Path) -> Path:
    path = Path(cache) / CANONICAL_FILE
    save_npz(path, vertices=face.vertices.astype(np.float32), triangles=face.triangles.astype(np.int32))
    return path


def load_canonical_face_file(cache: Path) -> CanonicalFace | None:
    """The canonical face a cache carries, or None when it has none."""
    path = Path(cache) / CANONICAL_FILE
    if not path.is_file():
        return None
    with np.load(path) as z:
        return CanonicalFace(z["vertices"].astype(np.float64), z["triangles"].astype(np.int64))


def load_clip_landmarks(folder: Path) -> tuple[np.ndarray, int] | None:
    """(landmarks (T, 468, 3) float32 with NaN rows, size) of a clip folder, or None when not detected yet."""
    path = Path(folder) / LANDMARKS_FILE
    if not path.is_file():
        return None
    with np.load(path) as z:
        return z["landmarks"].astype(np.float32), int(z["size"])
