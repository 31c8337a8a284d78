"""Sources without cameras for `prepare`: a folder of photos, a video file or a folder of frames of one head.
The face gives everything a calibration would: cameras (`face_cameras`), the expression code of each view
(MediaPipe's ARKit blendshapes) and, with `segment`, the masks.

Photos (a folder of at most MAX_VIEWS images) must each show exactly one face of the same person: anything else
is bad input naming the photo; `--views N` of them (default: up to 4, what the model takes) are used, picked
like video frames. A video, or a folder of
more frames than that, is a pool of frames: those with exactly one sharp face and open eyes are candidates, and
`--views N` (default 4) of them are picked by farthest-point sampling on the head's yaw and pitch, starting
from the most frontal. Warnings say when the views turn too little for 3D, and when faces are tiny or blurred.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stages.cameras import MIN_TURN_DEG, Cameras
from stages.capture.face_cameras import FaceCameras, solve_face_cameras
from stages.capture.sources import Source, SourceView
from stages.errors import BadInput
from stages.expressions import ARKIT_INDEX
from stages.track.frames import natural_key

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".heic", ".heif", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_VIEWS = 4  # the model takes at most 4 views (it was trained with 4)
MAX_DETECT_SIDE = 1280  # the landmarker sees at most this (it runs at 256 internally); landmarks scale back
MAX_CANDIDATES = 150  # video frames looked at, evenly spread over the clip
TINY_FACE_PX = 40.0  # outer eye corners closer than this: the face is too small for detail
BLUR_SHARPNESS = 12.0  # variance of the Laplacian on a face normalised to 128 px across; below: blurred
EYES_CLOSED = 0.55  # eyeBlink blendshape above this: closed
SAME_PERSON_L2 = 0.75  # dlib: one person's photos measured up to 0.54 apart (../shared/real), others 0.41-1.0
FOCAL35_TAG = 0xA405  # EXIF FocalLengthIn35mmFilm


@dataclass
class FaceView:
    """One usable image and what the landmarker saw in it."""

    name: str  # file path as given (photos, frames) or "video.mp4#frame"
    path: Path
    frame_index: int | None
    image: np.ndarray  # uint8 (H, W, 3)
    det: object  # stages.track.landmarker.FaceResult
    focal35: float | None = None
    sharpness: float = 0.0


def is_uncalibrated(src: Path) -> bool:
    """A video file, or a folder of images with no transforms.json and no COLMAP model."""
    from stages.capture.colmap import find_colmap_model

    if src.is_file():
        return src.suffix.lower() in VIDEO_SUFFIXES
    if not src.is_dir() or (src / "transforms.json").is_file() or find_colmap_model(src) is not None:
        return False
    return bool(_images_in(src))


def _images_in(folder: Path) -> list[Path]:
    """Images directly in `folder`, else in `folder/images` (natural sort order)."""
    for cand in (folder, folder / "images"):
        if cand.is_dir():
            found = sorted((p for p in cand.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES),
                           key=natural_key)
            if found:
                return found
    return []


def read_photo(path: Path) -> tuple[np.ndarray, float | None]:
    """An RGB uint8 photo turned upright by its EXIF orientation, and its 35 mm equivalent focal if recorded."""
    from PIL import Image, ImageOps

    if path.suffix.lower() in (".heic", ".heif"):
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
        except ImportError:
            raise BadInput("HEIC photos need pillow-heif (pip install pillow-heif), or convert them to JPEG",
                           path) from None
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            f35 = exif.get_ifd(0x8769).get(FOCAL35_TAG) or exif.get(FOCAL35_TAG)
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read image ({exc.__class__.__name__})", path) from exc
    try:
        f35 = float(f35) if f35 else None
    except (TypeError, ValueError):
        f35 = None
    return np.ascontiguousarray(rgb), f35


def _detect(lm, rgb: np.ndarray):  # noqa: ANN001, ANN202 (a Landmarker and a FaceResult)
    """Landmarks of the largest face in full-resolution pixels (the landmarker sees a reduced copy)."""
    from stages.track.landmarker import detect

    h, w = rgb.shape[:2]
    f = min(1.0, MAX_DETECT_SIDE / max(h, w))
    small = cv2.resize(rgb, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    det = detect(lm, small)
    if det is not None and f < 1:
        det.landmarks = det.landmarks / f
    return det


def face_size_px(det) -> float:  # noqa: ANN001
    """Distance between the outer eye corners, pixels."""
    return float(np.linalg.norm(det.landmarks[33, :2] - det.landmarks[263, :2]))


def sharpness(rgb: np.ndarray, det) -> float:  # noqa: ANN001
    """Variance of the Laplacian over the face box, resampled so the face is 128 px across."""
    lo, hi = det.landmarks[:, :2].min(0), det.landmarks[:, :2].max(0)
    x0, y0 = np.maximum(lo.astype(int), 0)
    x1, y1 = np.minimum(hi.astype(int) + 1, [rgb.shape[1], rgb.shape[0]])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    grey = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    s = 128.0 / max(x1 - x0, 1)
    grey = cv2.resize(grey, (128, max(4, round((y1 - y0) * s))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def eyes_closed(det) -> bool:  # noqa: ANN001
    b = det.blendshapes
    return bool(b[ARKIT_INDEX["eyeBlinkLeft"]] > EYES_CLOSED and b[ARKIT_INDEX["eyeBlinkRight"]] > EYES_CLOSED)


def yaw_pitch(det) -> tuple[float, float]:  # noqa: ANN001
    """Where the camera sits as seen from the head (degrees): yaw + toward the subject's left, pitch + above."""
    from stages.track.pose import rotation_part

    v = rotation_part(det.transform)[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    return math.degrees(math.atan2(v[0], v[2])), math.degrees(math.asin(float(np.clip(v[1], -1, 1))))


def farthest_on_pose(angles: np.ndarray, k: int) -> list[int]:
    """k indices spread over (yaw, pitch): the most frontal first, then the farthest from all chosen."""
    from stages.farthest import farthest_point_order

    first = int(np.argmin(np.abs(angles).sum(1)))
    return sorted(farthest_point_order(len(angles), k, first,
                                       lambda i: np.linalg.norm(angles - angles[i], axis=1)))


def _video_frames(path: Path, stride_target: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB uint8) of about `stride_target` frames spread over the clip."""
    from stages.track.frames import open_frames

    frames = open_frames(path)
    n = frames.count or 0
    stride = max(1, math.ceil(n / stride_target)) if n else 1
    for i, frame in enumerate(frames):
        if i % stride == 0:
            yield i, frame


def _frame_at(path: Path, index: int) -> np.ndarray:
    from stages.track.frames import open_frames

    for i, frame in enumerate(open_frames(path)):
        if i == index:
            return frame
    raise BadInput(f"frame {index} vanished from the video", path)


def _check_same_person(views: list[FaceView]) -> None:
    """dlib identity embeddings (as CSIM uses) of every view; one far from the rest is another person."""
    try:
        from stages.metrics.csim import FaceEmbedder

        embedder = FaceEmbedder()
    except (ImportError, BadInput):
        return  # the eval extra is not installed: the reprojection check still warns
    embs = []
    for v in views:  # dlib finds and aligns the face itself: it misses turned heads, whose embeddings are poor
        lo, hi = v.det.landmarks[:, :2].min(0), v.det.landmarks[:, :2].max(0)
        c, r = (lo + hi) / 2, float(np.max(hi - lo))
        x0, y0 = int(max(c[0] - r, 0)), int(max(c[1] - r, 0))
        x1, y1 = int(min(c[0] + r, v.image.shape[1])), int(min(c[1] + r, v.image.shape[0]))
        embs.append(embedder.embed(cv2.resize(v.image[y0:y1, x0:x1], (400, 400), interpolation=cv2.INTER_AREA)))
    idx = [i for i, e in enumerate(embs) if e is not None]
    if len(idx) < 2:
        return
    stack = np.stack([embs[i] for i in idx])
    dist = np.linalg.norm(stack[:, None] - stack[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(1)  # a photo of the same person resembles at least one other photo closely
    worst = int(np.argmax(nearest))
    if nearest[worst] > SAME_PERSON_L2:
        raise BadInput(f"this photo shows a different person from the others (its face identity embedding is "
                       f"{nearest[worst]:.2f} from the nearest other, same people are below {SAME_PERSON_L2}); "
                       "use photos of one person", views[idx[worst]].path)


def load_face_source(src: Path, views: int | None, max_views: int, fov: float | None = None,
                     track: Callable[..., Iterable] = lambda it, *a, **k: it,
                     warn: Callable[[str], None] = lambda m: None) -> tuple[Source, FaceCameras, list[FaceView]]:
    """Read photos or video frames, pick the views, solve their cameras: a `Source` in the head-centred world
    (metres), the solved cameras and the chosen views."""
    from stages.track.landmarker import open_landmarker

    if src.is_file():
        pool, strict = None, False
    else:
        photos = _images_in(src)
        strict = len(photos) <= max_views  # photos: each must show the face; more: frames, bad ones skipped
        pool = photos
    want = views if views is not None else (min(len(pool), DEFAULT_VIEWS) if strict and pool else DEFAULT_VIEWS)
    found: list[FaceView] = []
    skipped = {"no face": 0, "several faces": 0, "blurred": 0, "eyes closed": 0}
    with open_landmarker(num_faces=2) as lm:
        if pool is None:
            items: Iterable = ((src, i, frame, None) for i, frame in _video_frames(src, MAX_CANDIDATES))
            desc, total = "finding faces in the video", MAX_CANDIDATES
        else:
            stride = 1 if strict else max(1, math.ceil(len(pool) / MAX_CANDIDATES))
            items = ((p, None, *read_photo(p)) for p in pool[::stride])
            desc, total = "finding faces", len(pool[::stride])
        for path, index, rgb, f35 in track(items, desc, total=total):
            det = _detect(lm, rgb)
            name = f"{path.name}#{index}" if index is not None else path.name
            if det is None:
                if strict:
                    raise BadInput("no face found in this photo", path)
                skipped["no face"] += 1
                continue
            if det.faces > 1:
                if strict:
                    raise BadInput(f"this photo shows {det.faces} faces; use photos of one person alone", path)
                skipped["several faces"] += 1
                continue
            sharp = sharpness(rgb, det)
            if not strict and (sharp < BLUR_SHARPNESS or eyes_closed(det)):
                skipped["blurred" if sharp < BLUR_SHARPNESS else "eyes closed"] += 1
                continue
            keep = rgb if (strict or index is None) else None  # video frames are fetched again once chosen
            found.append(FaceView(name, path, index, keep, det, f35, sharp))  # type: ignore[arg-type]
    if len(found) < max(want, 1):
        why = ", ".join(f"{v} {k}" for k, v in skipped.items() if v)
        raise BadInput(f"only {len(found)} usable view(s) with one clear face ({why or 'none skipped'}); "
                       f"need {want} (film the head turning slowly, or pass --views with fewer)", src)
    angles = np.array([yaw_pitch(v.det) for v in found])
    chosen = [found[i] for i in farthest_on_pose(angles, want)]
    if strict and len(chosen) < len(found):
        warn(f"using {len(chosen)} of the {len(found)} photos, spread over the head's turns (--views N for more)")
    spread = np.ptp(angles, axis=0)
    if float(np.hypot(*spread)) < MIN_TURN_DEG:
        warn(f"the {'photos' if strict else 'clip'} turn(s) the head by only {float(np.hypot(*spread)):.0f} "
             f"degrees; views this similar give little 3D (turn the head about +-45 degrees)")
    for v in chosen:
        if v.image is None:
            v.image = _frame_at(v.path, int(v.frame_index))  # type: ignore[arg-type]
        if face_size_px(v.det) < TINY_FACE_PX:
            warn(f"{v.name}: the face is tiny ({face_size_px(v.det):.0f} px between the eye corners); come closer")
        elif v.sharpness < BLUR_SHARPNESS:
            warn(f"{v.name}: the face is blurred")
    if strict and len(chosen) > 1:
        _check_same_person(chosen)
    sizes = [(v.image.shape[1], v.image.shape[0]) for v in chosen]
    f35 = [v.focal35 for v in chosen]
    cams = solve_face_cameras([v.det for v in chosen], sizes, exif_focal35=f35 if all(f35) else None,
                              fov_deg=fov)
    for w in cams.warnings:
        warn(w)
    source_views = []
    for i, v in enumerate(chosen):
        w, h = sizes[i]
        cam = Cameras(torch.tensor(cams.c2w[i:i + 1], dtype=torch.float32),
                      torch.tensor([cams.fx[i]], dtype=torch.float32), torch.tensor([cams.fy[i]], dtype=torch.float32),
                      torch.tensor([cams.cx[i]], dtype=torch.float32), torch.tensor([cams.cy[i]], dtype=torch.float32),
                      w, h)
        source_views.append(SourceView(v.name, v.path, cam, expression=[float(x) for x in v.det.blendshapes],
                                       image=v.image, frame_index=v.frame_index))
    kind = "face-video" if src.is_file() else ("face-photos" if strict else "face-frames")
    return Source(src, kind, src, source_views, {"expression_space": "arkit52"}), cams, chosen
