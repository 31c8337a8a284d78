"""`avat3r prepare`: photos + cameras -> a capture folder (SPEC section 2) the model can read.

Steps, per source folder (nerfstudio `transforms.json` or a COLMAP text model, see `sources` and `colmap`):
1. Read the cameras; pick the views (`--views N` takes N of them by farthest-viewpoint sampling, starting from
   the most central camera; more than MAX_VIEWS photos without `--views` is refused).
2. Normalise the world from the cameras alone (`normalise`): the cameras' common look-at point becomes the
   origin, +y their up direction, +z the side they look from, and (with `--scale auto`) the mean camera
   distance becomes 1.0. The transform is recorded in transforms.json under `normalisation`.
3. Per photo: check its size against its camera, take its mask (`masking`), remove lens distortion if the
   camera has any (OpenCV, to a pinhole with the same K), cut the square around the head sphere of
   `--head-radius` (capture units) centred on the projected head centre, padding with transparent black where
   it leaves the photo, and resample it to `--res` (area filter down, bilinear up), rewriting the intrinsics.
   Black letterbox bars at the photo's edges (`letterbox`) are padding too, even inside a supplied mask.
4. Write the capture atomically: RGBA PNGs (alpha = mask, or just the padding when there is no mask) and
   transforms.json; per-frame `expression` and the top-level `expression_space` are carried over when present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from stages.cameras import Cameras
from stages.capture import MAX_VIEWS, write_capture
from stages.capture.face_anchor import face_anchor
from stages.capture.face_source import is_uncalibrated, load_face_source
from stages.capture.imaging import crop_cameras, crop_resize, head_square, undistort
from stages.capture.letterbox import picture_area
from stages.capture.masking import MASK_METHODS, grabcut_mask, source_mask
from stages.capture.normalise import Normalisation, fit_normalisation
from stages.capture.segment import segmenter_name
from stages.capture.sources import Source, SourceView, load_source
from stages.errors import BadInput
from stages.io import read_image

T = TypeVar("T")
DEFAULT_RES = 512  # the model's input resolution for real photos
# The synthetic studio frames 0.34 m across at the head, seen from 1 m; a sphere of 0.17 at distance 1 spans
# 1.5% more, so prepared photos match the framing the model was trained on (and leave room for hair).
DEFAULT_HEAD_RADIUS = 0.17
CAMERA_SOURCES = ("auto", "source", "face")
NO_MASK_WARNING = "no foreground masks: the capture keeps the background, which the model was not trained on"


@dataclass
class PrepareOptions:
    """The knobs of `prepare`; the CLI options map one to one."""

    res: int = DEFAULT_RES
    views: int | None = None  # None: all photos (at most MAX_VIEWS)
    mask: str = "auto"  # one of MASK_METHODS
    scale: str | float | None = None  # auto | metric | a positive number; None: metric for face cameras, else auto
    head_radius: float = DEFAULT_HEAD_RADIUS  # capture units (after --scale)
    frame: str = "lookat"  # lookat: normalise from the cameras; keep: the source is already in the SPEC frame
    seed: int = 0
    cameras: str = "auto"  # auto: from the source's files, else from the face; source; face
    fov: float | None = None  # face cameras: the vertical field of view in degrees (default: EXIF, else estimated)


@dataclass
class PrepareResult:
    """What was written, for the closing summary line."""

    out: Path
    n_views: int
    mask_kind: str
    normalisation: Normalisation
    warnings: list[str] = field(default_factory=list)
    face: dict[str, Any] = field(default_factory=dict)  # face cameras: focal source, FOV, residuals


def check_options(opts: PrepareOptions) -> None:
    """Refuse impossible options up front, before any file is read."""
    if opts.mask not in MASK_METHODS:
        raise BadInput(f"--mask must be one of {', '.join(MASK_METHODS)}, got {opts.mask!r}")
    if opts.cameras not in CAMERA_SOURCES:
        raise BadInput(f"--cameras must be one of {', '.join(CAMERA_SOURCES)}, got {opts.cameras!r}")
    if opts.fov is not None and not 5.0 <= opts.fov <= 150.0:
        raise BadInput(f"--fov must be between 5 and 150 degrees, got {opts.fov}")
    if opts.frame not in ("lookat", "keep"):
        raise BadInput(f"--frame must be lookat or keep, got {opts.frame!r}")
    if not 8 <= opts.res <= 4096:
        raise BadInput(f"--res must be between 8 and 4096, got {opts.res}")
    if not opts.head_radius > 0:
        raise BadInput(f"--head-radius must be positive, got {opts.head_radius}")
    if opts.views is not None and not 1 <= opts.views <= MAX_VIEWS:
        raise BadInput(f"--views must be between 1 and {MAX_VIEWS}, got {opts.views}")


def select_views(cameras: Cameras, k: int) -> list[int]:
    """k views spread as widely as possible: start from the camera looking most like the mean direction,
    then keep adding the one whose direction is farthest from all chosen (k-farthest viewpoint sampling)."""
    d = cameras.forward_dirs().detach().cpu().double()
    d = d / d.norm(dim=-1, keepdim=True)
    mean = d.mean(0)
    chosen = [int(torch.argmax(d @ mean))]
    while len(chosen) < k:
        cos_to_chosen = (d @ d[chosen].T).max(dim=1).values
        cos_to_chosen[chosen] = float("inf")
        chosen.append(int(torch.argmin(cos_to_chosen)))
    return sorted(chosen)


def _pick(source: Source, opts: PrepareOptions) -> list[SourceView]:
    n = len(source.views)
    if opts.views is None:
        if n > MAX_VIEWS:
            raise BadInput(f"{n} photos, but a capture takes at most {MAX_VIEWS}; pass --views N to pick "
                           "N of them", source.cameras_file)
        return source.views
    if opts.views > n:
        raise BadInput(f"--views {opts.views}, but the source has only {n} photos", source.cameras_file)
    return [source.views[i] for i in select_views(_rig(source.views), opts.views)]


def _rig(views: list[SourceView]) -> Cameras:
    """All views' cameras as one batch (image sizes may differ; only poses are used from it)."""
    return Cameras.cat([v.camera.resized(1, 1) for v in views])


def _check_out(src: Path, out: Path) -> None:
    s, o = src.resolve(), out.resolve()
    if s == o or o in s.parents:
        raise BadInput("--out would replace the source folder; choose another output folder", out)


def _process_view(view: SourceView, cam: Cameras, source: Source, opts: PrepareOptions
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, Cameras]:
    """One photo -> (rgb, mask or ones, valid, mask kind, cropped camera) at opts.res."""
    img = view.image.astype(np.float32) / 255.0 if view.image is not None else read_image(view.image_path)
    h, w = img.shape[:2]
    if (w, h) != (cam.width, cam.height):
        raise BadInput(f"photo is {w}x{h} but {source.cameras_file.name} gives its camera as "
                       f"{cam.width}x{cam.height}", view.image_path)
    method = "segment" if opts.mask == "auto" and source.kind.startswith("face") else opts.mask
    mask, kind = source_mask(view, img, method, source.root)
    rgb = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
    picture = picture_area(rgb)  # letterbox bars count as padding: they are not the person
    stack = np.concatenate([rgb, (mask if mask is not None else np.ones((h, w), np.float32))[..., None],
                            picture[..., None]], axis=2)
    if view.distorted:
        stack = undistort(stack, cam, view.distortion)
    try:
        crop = head_square(cam, opts.head_radius)
    except BadInput as exc:
        raise BadInput(str(exc), view.image_path) from exc
    if crop.rect(w, h) is None:
        raise BadInput("the head (the cameras' common look-at point) is outside this photo", view.image_path)
    if kind == "grabcut":
        stack[..., 3] = grabcut_mask(stack[..., :3], stack[..., 4], crop, opts.seed)
    out = crop_resize(stack, crop, opts.res)
    return out[..., :3], out[..., 3], out[..., 4], kind, crop_cameras(cam, crop, opts.res)


def _identity(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    yield from items


def prepare_capture(src: str | Path, out: str | Path, opts: PrepareOptions | None = None,
                    track: Callable[..., Iterable[Any]] = _identity,
                    warn: Callable[[str], None] = lambda msg: None) -> PrepareResult:
    """Turn a folder of photos + cameras into a capture folder at `out` (see the module docstring)."""
    opts = opts or PrepareOptions()
    check_options(opts)
    src, out = Path(src), Path(out)
    warnings: list[str] = []

    def note(msg: str) -> None:
        warnings.append(msg)
        warn(msg)

    face_info: dict[str, Any] = {}
    if opts.cameras == "face" or (opts.cameras == "auto" and is_uncalibrated(src)):
        if not src.exists():
            raise BadInput("source not found", src)
        _check_out(src if src.is_dir() else src.parent, out)
        source, fcams, _ = load_face_source(src, opts.views, MAX_VIEWS, opts.fov, track, note)
        views = source.views
        norm = fit_normalisation(_rig(views), opts.scale or "metric", keep=True)
        # The head's size is known here (metres), so the crop holds the same head whatever --scale does.
        opts = replace(opts, head_radius=opts.head_radius * norm.scale)
        face_info = {"cameras": "face", "focal_source": fcams.focal_source,
                     "vfov_deg": round(fcams.vfov_deg, 3),
                     "residual_px": [round(float(r), 3) for r in fcams.residual_px],
                     "residual_overall_px": round(fcams.residual_overall_px, 3),
                     "yaw_pitch_deg": [[round(float(a), 2) for a in yp] for yp in fcams.yaw_pitch_deg()]}
    else:
        source = load_source(src)
        _check_out(source.root, out)
        views = _pick(source, opts)
        anchor = face_anchor(views) if opts.frame == "lookat" else None
        try:
            norm = fit_normalisation(_rig(views), opts.scale or "auto", keep=opts.frame == "keep", anchor=anchor)
        except BadInput as exc:
            raise BadInput(str(exc), source.cameras_file) from exc
    rgbs, masks, valids, kinds, cams = [], [], [], [], []
    for view in track(views, "preparing views", total=len(views)):
        cam = norm.apply(view.camera)
        rgb, mask, valid, kind, cropped = _process_view(view, cam, source, opts)
        rgbs.append(rgb)
        masks.append(mask)
        valids.append(valid)
        kinds.append(kind)
        cams.append(cropped)
    if len(set(kinds)) > 1:
        missing = [v.name for v, k in zip(views, kinds, strict=True) if k == "none"]
        raise BadInput(f"only some photos have masks ({', '.join(missing)} have none); give every photo a "
                       "mask or pass --mask none", source.root)
    kind = kinds[0]
    if kind == "none":
        note(NO_MASK_WARNING)
    alpha = np.stack(masks) * np.stack(valids)
    if kind == "none" and np.all(np.stack(valids) > 0.999):
        alpha = None  # nothing to mask at all: plain RGB images say "no mask" to read_capture
    exprs = [v.expression for v in views]
    expressions = None
    if all(e is not None for e in exprs) and len({len(e) for e in exprs}) == 1:  # type: ignore[arg-type]
        try:
            expressions = np.asarray(exprs, np.float32)
        except (TypeError, ValueError) as exc:
            raise BadInput("per-frame 'expression' entries must be lists of numbers",
                           source.cameras_file) from exc
    meta = {"normalisation": norm.to_json(),
            "prepare": {"source_format": source.kind, "source_files": [v.name for v in views], "mask": kind,
                        "head_radius": opts.head_radius, "frame": opts.frame, **face_info}}
    if kind == "segment":
        meta["prepare"]["segmenter"] = segmenter_name()
    extras = [{"source_file": str(v.image_path), **({"frame_index": v.frame_index} if v.frame_index is not None
                                                     else {})} for v in views] if face_info else None
    write_capture(out, np.stack(rgbs), alpha, Cameras.cat(cams), expressions,
                  source.meta.get("expression_space"), meta, frame_extras=extras)
    return PrepareResult(out, len(views), kind, norm, warnings, face_info)
