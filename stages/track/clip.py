"""A small driving clip made from a photo that ships with scikit-image (`skimage.data.astronaut()`): the head
rolls, the jaw opens (a local image warp), the eyes close (the lids are pulled over them) and the face is
mirrored half way through. It is for demos and tests of `track` and `animate --driving`: real face pixels,
known motions, nothing downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from stages.errors import BadInput

FACE_CROP = (slice(10, 300), slice(90, 380))  # rows, cols of the astronaut photo around her head


def astronaut_face(size: int = 192) -> np.ndarray:
    """The astronaut photo cropped around the face and resized to size x size RGB uint8."""
    import cv2

    try:
        from skimage import data
    except ImportError as exc:
        raise BadInput("the driving clip is made from scikit-image's astronaut photo: pip install scikit-image") \
            from exc
    return cv2.resize(np.ascontiguousarray(data.astronaut()[FACE_CROP]), (size, size), interpolation=cv2.INTER_AREA)


def _bump(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """A smooth bump (1 at the centre, 0 outside the ellipse) for local warps."""
    r2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    return np.clip(1.0 - r2, 0.0, 1.0) ** 2


def warp_face(img: np.ndarray, landmarks: np.ndarray, jaw: float, blink: float, roll_deg: float) -> np.ndarray:
    """Open the mouth by `jaw` (0..1), close both eyes by `blink` (0..1) and roll the image by `roll_deg`."""
    import cv2

    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = np.zeros_like(yy)
    # Jaw: everything below the lips slides down, most at the chin's centre line.
    lip = (landmarks[13, :2] + landmarks[14, :2]) / 2
    half = 0.5 * abs(landmarks[291, 0] - landmarks[61, 0])
    amp = 0.75 * half * jaw
    below = np.clip((yy - lip[1] + 2) / 6, 0, 1) * np.exp(-np.clip(yy - lip[1] - 3 * half, 0, None) / (2 * half))
    dy += amp * below * np.exp(-((xx - lip[0]) / (1.6 * half)) ** 2)
    # Blink: each eye's upper lid is pulled down over it (pixels are taken from above the eye).
    for top, bottom, left, right in ((159, 145, 33, 133), (386, 374, 362, 263)):
        cx, cy = (landmarks[left, 0] + landmarks[right, 0]) / 2, (landmarks[top, 1] + landmarks[bottom, 1]) / 2
        rx = 0.75 * abs(landmarks[right, 0] - landmarks[left, 0])
        ry = max(abs(landmarks[bottom, 1] - landmarks[top, 1]), 2.0) * 1.6
        dy += blink * 1.3 * ry * _bump(xx, yy, cx, cy, rx, ry)
    out = cv2.remap(img, xx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if jaw > 0:  # the open mouth is dark inside
        inside = _bump(xx, yy, lip[0], lip[1] + amp / 2, 0.85 * half, max(amp / 2, 1e-3))
        out = (out * (1.0 - 0.8 * np.clip(inside * 3, 0, 1))[..., None]).astype(np.uint8)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), roll_deg, 1.0)
    return cv2.warpAffine(out, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def driving_frames(n: int = 50, size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """(frames (n, size, size, 3) uint8, script (n, 4): jaw, blink, roll degrees, mirrored) of the driving clip:
    the jaw opens twice, the eyes blink once, the head rolls ±8 degrees, the second half is mirrored."""
    from stages.track.landmarker import detect, open_landmarker

    face = astronaut_face(size)
    with open_landmarker() as lm:
        found = detect(lm, face)
    if found is None:  # cannot happen with the shipped landmarker; guards a user-supplied one
        raise BadInput("the landmarker finds no face in the astronaut photo")
    t = np.arange(n) / max(n, 1)
    jaw = np.clip(np.sin(4 * math.pi * t), 0, 1) ** 2
    blink = np.exp(-(((t - 0.62) / 0.04) ** 2))
    roll = 8.0 * np.sin(2 * math.pi * t)
    mirrored = t >= 0.5
    frames = []
    for i in range(n):
        img = warp_face(face, found.landmarks, float(jaw[i]), float(blink[i]), float(roll[i]))
        frames.append(img[:, ::-1] if mirrored[i] else img)
    return np.stack(frames), np.stack([jaw, blink, roll, mirrored.astype(float)], 1)


def write_clip(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> None:
    """Write frames as an H.264 mp4 (atomically)."""
    from stages.io import atomic_path
    from stages.video import mp4_writer

    with atomic_path(path) as tmp:
        writer = mp4_writer(tmp, fps, quality=7)
        try:
            for f in frames:
                writer.append_data(np.ascontiguousarray(f))
        finally:
            writer.close()
