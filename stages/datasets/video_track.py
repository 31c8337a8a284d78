"""Tracking a corpus of monocular talking-head clips once, into a cache that `video:DIR` datasets read.

Per clip (a video file, or a folder of frames) a subsample of frames (every `stride`-th, at most `max_frames`
spread over the clip) goes through MediaPipe's face landmarker (IMAGE mode, up to 2 faces, so a second person is
noticed). A frame with a face gives:
- a head-pose camera: `stages.capture.face_cameras.solve_face_cameras` fits MediaPipe's canonical face mesh to
  the rigid landmarks of all the clip's frames at once (one PnP per frame, ONE focal for the clip, estimated
  jointly), in the head-centred world (metres, head centre at the origin, +y up, face along +z); frames whose
  reprojection error is far above the clip's median (a blink of the tracker, another face) are dropped;
- a square crop around the head sphere (`head_radius` metres round the origin, as the dataset loaders and
  `prepare` frame heads), stored as JPEG at `res` pixels, with that crop's camera;
- the ARKit-52 code, the 478 landmarks in crop pixels, a sharpness score (variance of the Laplacian over the
  face box), the number of faces seen;
- a person mask of the crop (`stages.capture.segment.person_mask`: MediaPipe's selfie segmentation, GrabCut
  where its model is not installed), stored as PNG.

A clip's folder in the cache is named after the clip and a key hashed from the settings and the file contents
(size plus the first and last 4 MiB of each file: cheap on large corpora, and any re-encode changes it). It is
written under a temporary name and renamed when complete, so a killed run resumes where it stopped and never
leaves a half clip. `CACHE/index.json` lists every clip with its verdict: usable, or skipped for no face,
several faces, too few frames with a face (too short) or too little head rotation (too static).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stages.datasets.clip_annotations import ClipSpan
from stages.errors import BadInput
from stages.io import atomic_dir, to_uint8

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CACHE_NAME = ".avat3r_video_cache"  # default cache folder inside the corpus
REGION = 2.5  # frames are kept as the square of this many face sizes round the face until the crops are cut
HASH_BYTES = 4 << 20
SKIP_REASONS = ("no face", "several faces", "too short", "too static", "unreadable")


@dataclass(frozen=True)
class TrackSettings:
    """What a cached track depends on (all of it goes into the cache key)."""

    stride: int = 5  # every stride-th source frame (less in clips shorter than stride * min_frames) ...
    max_frames: int = 60  # ... and at most this many per clip, evenly spread over the clip
    res: int = 512  # crop side stored in the cache
    head_radius: float = 0.17  # metres round the head centre the crop encloses
    min_frames: int = 12  # fewer usable frames: "too short" (4 inputs + 8 supervision)
    min_spread: float = 3.0  # degrees of head rotation spread below which a clip is "too static" (0: keep all)
    max_multi: float = 0.2  # share of frames with several faces above which a clip is skipped
    jpeg_quality: int = 95
    fov: float = 0.0  # vertical field of view (degrees) of every frame's camera; 0: one focal solved per clip
    version: int = 3  # bump when the cache format or the tracking changes

    def __post_init__(self) -> None:
        if self.fov and not 5.0 <= self.fov <= 150.0:
            raise BadInput(f"video tracking option fov={self.fov}: expected 0 (solve) or 5 to 150 degrees")

    def key(self) -> str:
        fields = asdict(self)
        if not fields["fov"]:  # caches tracked before the option existed keep their keys
            del fields["fov"]
        return json.dumps(fields, sort_keys=True)


def clip_sources(root: Path, skip: Path | None = None) -> dict[str, tuple[Path, ClipSpan | None]]:
    """Clip name -> (source, span). Without annotation files: `find_clips`'s clips, no spans. With VFHQ, HDTF
    or CelebV-HQ annotations (`stages.datasets.clip_annotations`), a video that annotations cut becomes one
    clip per span, named `VIDEO_NAME#LABEL`; other videos and frame folders stay whole."""
    from stages.datasets.clip_annotations import find_annotations

    plain = _plain_clips(root, skip)
    spans = find_annotations(Path(root), skip)
    by_stem: dict[str, tuple[str, Path]] = {}
    for name, path in plain.items():
        if path.is_file():
            by_stem.setdefault(path.stem, (name, path))
    out: dict[str, tuple[Path, ClipSpan | None]] = {}
    cut: set[str] = set()
    for span in spans:
        if span.corpus == "celebvhq" and span.label in by_stem:
            continue  # a released CelebV-HQ clip: already cut and cropped
        hit = by_stem.get(span.video)
        if hit is not None:
            out[f"{hit[0]}#{span.label}"] = (hit[1], span)
            cut.add(hit[0])
    out.update({name: (path, None) for name, path in plain.items() if name not in cut})
    return dict(sorted(out.items()))


def find_clips(root: Path, skip: Path | None = None) -> dict[str, Path]:
    """Clip name -> source path of every clip `clip_sources` finds (an annotated span names its video)."""
    return {name: path for name, (path, _) in clip_sources(root, skip).items()}


def _plain_clips(root: Path, skip: Path | None = None) -> dict[str, Path]:
    """Clip name (path relative to root, posix) -> path: every video file, and every folder holding images
    directly (a clip of frames), searched recursively; hidden folders and `skip` (the cache) are ignored."""
    root = Path(root)
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (skip is None or here / d != skip))
        images = [f for f in filenames if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        if images and here != root:
            out[here.relative_to(root).as_posix()] = here
        for f in sorted(filenames):
            if Path(f).suffix.lower() in VIDEO_SUFFIXES:
                out[(here / f).relative_to(root).as_posix()] = here / f
    return dict(sorted(out.items()))


def _file_digest(h: hashlib._Hash, path: Path) -> None:  # type: ignore[name-defined]
    size = path.stat().st_size
    h.update(f"{path.name}:{size}:".encode())
    with path.open("rb") as f:
        h.update(f.read(HASH_BYTES))
        if size > 2 * HASH_BYTES:
            f.seek(size - HASH_BYTES)
            h.update(f.read(HASH_BYTES))


def clip_key(path: Path, settings: TrackSettings, span: ClipSpan | None = None) -> str:
    """Hex key of a clip's contents, its annotated span (if any) and the tracking settings."""
    h = hashlib.sha256(settings.key().encode())
    if span is not None:
        h.update(span.describe().encode())
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    for p in files:
        _file_digest(h, p)
    return h.hexdigest()


def cache_folder(cache: Path, name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-80:]
    return Path(cache) / f"{safe}-{key[:12]}"


def frame_picks(count: int, stride: int, max_frames: int, min_frames: int = 1) -> list[int]:
    """Source frame indices to track: every stride-th (a smaller stride for clips too short to give min_frames
    that way), thinned evenly to at most max_frames."""
    stride = max(1, min(stride, count // max(min_frames, 1)))
    idx = list(range(0, count, stride))
    if len(idx) > max_frames:
        idx = [idx[int(round(k))] for k in np.linspace(0, len(idx) - 1, max_frames)]
    return idx


def _frames(path: Path, picks: set[int], last: int) -> Iterator[tuple[int, np.ndarray]]:
    import logging

    from stages.track.frames import open_frames

    # stopping a video before its end makes imageio-ffmpeg stop (or kill) the decoder and say so: not news
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    src = open_frames(path)
    for i, frame in enumerate(src):
        if i > last:
            return
        if i in picks:
            yield i, frame


def _source_fps(path: Path) -> float:
    from stages.track.frames import open_frames

    return float(open_frames(path).source_fps)


def _count(path: Path) -> int:
    from stages.track.frames import open_frames

    n = open_frames(path).count
    if n is None:
        raise BadInput("cannot count the video's frames", path)
    return n


def face_region(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(copy of the square of REGION face sizes round the face, clipped to the frame, x0, y0): what a frame
    must keep until the clip's cameras are solved (a whole 1080p frame per tracked frame would not fit)."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    c, half = (lo + hi) / 2, REGION * float((hi - lo).max())
    h, w = frame.shape[:2]
    x0, y0 = max(int(c[0] - half), 0), max(int(c[1] - half), 0)
    x1, y1 = min(int(c[0] + half) + 1, w), min(int(c[1] + half) + 1, h)
    return frame[y0:y1, x0:x1].copy(), x0, y0


def sharpness(grey: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian inside the face box (x0, y0, x1, y1): low for blurred or compressed faces."""
    import cv2

    x0, y0, x1, y1 = box
    patch = grey[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)]
    if patch.size < 16:
        return 0.0
    return float(cv2.Laplacian(patch.astype(np.float32), cv2.CV_32F).var())


def _segmenter() -> Callable[[], contextlib.AbstractContextManager] | None:
    """`stages.capture.segment.person_masker` (MediaPipe selfie segmentation, else GrabCut): opened once per
    clip, it yields the mask function for the clip's frames."""
    try:
        from stages.capture.segment import person_masker
    except ImportError:
        return None
    return person_masker


def _crop_one(region: np.ndarray, landmarks: np.ndarray, cam, settings: TrackSettings) -> dict:
    """The head crop of one frame region (its camera `cam` is in region pixels) and what goes with it."""
    import cv2

    from stages.datasets.views import apply_crop, crop_map, cropped_rig, head_crops

    h, w = region.shape[:2]
    crop = head_crops(cam, settings.head_radius, "frame")[0]
    cmap = crop_map(cam, crop, settings.res, w, h)
    img8 = np.clip(apply_crop(region.astype(np.float32), cmap) + 0.5, 0, 255).astype(np.uint8)
    cc = cropped_rig(cam, [crop], settings.res)
    lm = (landmarks[:, :2] - np.array([crop.x0, crop.y0], np.float32)) * (settings.res / crop.size)
    lo, hi = lm.min(0), lm.max(0)
    grey = cv2.cvtColor(img8, cv2.COLOR_RGB2GRAY)
    return {"img": img8, "valid": cmap.valid, "c2w": cc.c2w[0].numpy(),
            "intr": np.array([float(cc.fx[0]), float(cc.fy[0]), float(cc.cx[0]), float(cc.cy[0])]),
            "landmarks": lm.astype(np.float32),
            "sharp": sharpness(grey, (int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1)),
            "rect": np.array([crop.x0, crop.y0, crop.size])}


def _region_camera(cams, k: int, x0: int, y0: int, w: int, h: int):
    """Frame k's solved camera for its region (principal point moved by the region's corner)."""
    import torch

    from stages.cameras import Cameras

    one = torch.ones(1, dtype=torch.float64)
    return Cameras(torch.from_numpy(cams.c2w[k])[None], one * float(cams.fx[k]), one * float(cams.fy[k]),
                   one * (float(cams.cx[k]) - x0), one * (float(cams.cy[k]) - y0), int(w), int(h))


def _outliers(cams, landmarks: list[np.ndarray]) -> np.ndarray:
    """Frames whose rigid-landmark reprojection error is far above the clip's median (face_cameras' rule)."""
    from stages.capture.face_cameras import DISAGREE_FACTOR, DISAGREE_FLOOR

    size = np.array([np.linalg.norm(lm[33, :2] - lm[263, :2]) + 1e-6 for lm in landmarks])
    rel = cams.residual_px / size
    return rel > max(DISAGREE_FACTOR * float(np.median(rel)), DISAGREE_FLOOR)


def verdict(n_face: int, n_multi: int, n_single: int, spread: float, settings: TrackSettings) -> str:
    """'usable' or the reason a clip is skipped."""
    if n_face == 0:
        return "no face"
    if n_multi > settings.max_multi * n_face:
        return "several faces"
    if n_single < settings.min_frames:
        return "too short"
    if spread < settings.min_spread:
        return "too static"
    return "usable"


def track_clip(path: Path, dest: Path, settings: TrackSettings, key: str, name: str,
               span: ClipSpan | None = None) -> dict:
    """Track one clip into the cache folder `dest` (written under a temporary name, then renamed). With a
    `span`, only its frames are tracked, cut to its face box when it has one (the box's crop is then the
    frame: its centre stands in for the principal point, as for any cropped clip)."""
    import cv2

    from stages.track.landmarker import detect, open_landmarker

    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "crops").mkdir(parents=True)
    (tmp / "valid").mkdir()  # where each crop shows its frame: no loss belongs past the frame's edge
    segment = _segmenter()
    if segment is not None:
        (tmp / "masks").mkdir()
    rows, picks_n = [], 0
    meta = {"name": name, "source": str(path), "key": key, "settings": asdict(settings), "masks": segment is not None}
    if span is not None:
        meta["span"] = asdict(span)
    try:
        count = _count(path)
        lo, hi = 0, count - 1
        if span is not None:
            lo, hi = span.frame_range(_source_fps(path), count)
            if hi < lo:
                raise BadInput(f"the annotated span {span.label} lies outside the video's {count} frames", path)
        picks = [lo + i for i in frame_picks(hi - lo + 1, settings.stride, settings.max_frames, settings.min_frames)]
        picks_n = len(picks)
        kept, n_multi = [], 0  # (frame index, FaceResult, (w, h), region, x0, y0) of frames with one face
        with open_landmarker(num_faces=2) as lm:
            for i, frame in _frames(path, set(picks), picks[-1] if picks else -1):
                box = span.box_px(frame.shape[1], frame.shape[0]) if span is not None else None
                if box is not None:
                    frame = np.ascontiguousarray(frame[box[1]:box[3], box[0]:box[2]])
                face = detect(lm, frame)
                if face is None:
                    continue
                meta["size"] = [int(frame.shape[1]), int(frame.shape[0])]
                if lm.faces_seen > 1:
                    n_multi += 1
                    continue
                kept.append((i, face, (frame.shape[1], frame.shape[0]), *face_region(frame, face.landmarks)))
        meta["frame_count"], meta["multi_face_frames"] = count, n_multi
        if kept:
            from stages.capture.face_cameras import solve_face_cameras

            cams = solve_face_cameras([k[1] for k in kept], [k[2] for k in kept], fov_deg=settings.fov or None)
            meta["vfov_deg"], meta["residual_px"] = round(cams.vfov_deg, 2), round(cams.residual_overall_px, 3)
            drop = _outliers(cams, [k[1].landmarks for k in kept])
            meta["dropped_frames"] = int(drop.sum())
            with segment() if segment is not None else contextlib.nullcontext(None) as mask_of:
                for j, (i, face, _, region, x0, y0) in enumerate(kept):
                    if drop[j]:
                        continue
                    cam = _region_camera(cams, j, x0, y0, region.shape[1], region.shape[0])
                    row = _crop_one(region, face.landmarks - np.array([x0, y0, 0], np.float32), cam, settings)
                    row.update(frame=i, faces=1, code=face.blendshapes.astype(np.float32),
                               residual=float(cams.residual_px[j]))
                    k = len(rows)
                    cv2.imwrite(str(tmp / "crops" / f"{k:05d}.jpg"), cv2.cvtColor(row["img"], cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
                    if mask_of is not None:
                        cv2.imwrite(str(tmp / "masks" / f"{k:05d}.png"), to_uint8(mask_of(row["img"]) * row["valid"]))
                    cv2.imwrite(str(tmp / "valid" / f"{k:05d}.png"), to_uint8(row["valid"]))
                    del row["img"], row["valid"]
                    rows.append(row)
    except BadInput as exc:
        meta["verdict"], meta["why"] = "unreadable", str(exc)
    if rows:
        arr = {k: np.stack([r[k] for r in rows]) for k in ("c2w", "intr", "landmarks", "code", "sharp", "frame",
                                                            "faces", "rect", "residual")}
        np.savez(tmp / "track.npz", **arr)
        from stages.cameras import viewing_spread_deg

        spread = viewing_spread_deg(arr["c2w"])
        meta.update(spread_deg=round(spread, 2), frames=len(rows))
    if "verdict" not in meta:
        n_multi = meta.get("multi_face_frames", 0)
        meta["verdict"] = verdict(len(rows) + n_multi, n_multi, len(rows), meta.get("spread_deg", 0.0), settings)
    meta["tracked_frames"] = picks_n
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        os.replace(tmp, dest)
    except OSError:  # another process (a torchrun rank) finished this clip first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        return json.loads((dest / "meta.json").read_text())
    return meta


def _work(job: tuple[str, str, str, TrackSettings, str, ClipSpan | None]) -> dict:
    name, path, dest, settings, key, span = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return track_clip(Path(path), Path(dest), settings, key, name, span)
    except Exception as exc:  # noqa: BLE001 - one broken clip must not stop a corpus
        return {"name": name, "source": path, "key": key, "verdict": "unreadable",
                "why": f"{type(exc).__name__}: {exc}"}


def _dead_temporaries(cache: Path) -> None:
    """Remove half-written clip folders of runs that were killed (their process is gone)."""
    for p in cache.glob("*.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


Progress = Callable[[Iterable, str, int], Iterable]


def _no_progress(items: Iterable, desc: str, total: int) -> Iterable:
    return items


def bar_progress(items: Iterable, desc: str, total: int) -> Iterable:
    """A progress bar on stderr while a corpus is tracked (seconds per clip); plain iteration without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, total=total, file=sys.stderr)


def track_corpus(root: Path, cache: Path | None = None, settings: TrackSettings | None = None, workers: int = 1,
                 progress: Progress = _no_progress, log: Callable[[str], None] | None = None) -> dict:
    """Track every clip under root that the cache lacks (in `workers` processes) and write CACHE/index.json:
    {"clips": {name: {"folder", "verdict", ...}}, "summary": {verdict: count}}. Returns that index."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput("video corpus folder not found", root)
    settings = settings or TrackSettings()
    cache = Path(cache) if cache is not None else root / CACHE_NAME
    sources = clip_sources(root, skip=cache)
    clips = {name: path for name, (path, _) in sources.items()}
    if not clips:
        raise BadInput(f"no clips ({', '.join(VIDEO_SUFFIXES)} files or folders of frames) found", root)
    cache.mkdir(parents=True, exist_ok=True)
    _dead_temporaries(cache)
    entries: dict[str, dict] = {}
    jobs = []
    for name, (path, span) in sources.items():
        key = clip_key(path, settings, span)
        dest = cache_folder(cache, name, key)
        if (dest / "meta.json").is_file():
            entries[name] = json.loads((dest / "meta.json").read_text())
        else:
            jobs.append((name, str(path), str(dest), settings, key, span))
    if jobs:
        if log:
            log(f"tracking {len(jobs)} of {len(clips)} clips ({len(clips) - len(jobs)} cached) with {workers} "
                f"worker(s) into {cache}")
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                for meta in progress(pool.imap_unordered(_work, jobs), "tracking clips", len(jobs)):
                    entries[meta["name"]] = meta
        else:
            for meta in progress(map(_work, jobs), "tracking clips", len(jobs)):
                entries[meta["name"]] = meta
    index = {"root": str(root), "settings": asdict(settings), "clips": {}, "summary": {}}
    for name in clips:
        meta = entries[name]
        folder = cache_folder(cache, name, meta["key"])
        index["clips"][name] = {"folder": folder.name, **{k: meta.get(k) for k in (
            "verdict", "why", "frames", "multi_face_frames", "spread_deg", "vfov_deg", "residual_px", "masks",
            "frame_count", "size")}}
        v = meta.get("verdict", "unreadable")
        index["summary"][v] = index["summary"].get(v, 0) + 1
    tmp = cache / f"index.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, cache / "index.json")
    return index


def shrink_cache(src: Path, dst: Path, res: int, quality: int | None = None) -> dict:
    """Copy a tracking cache with its crops, masks and frame-coverage maps resampled to res x res (intrinsics
    and landmarks scaled to match) and its crops re-encoded at JPEG `quality` (default: the cache's own): a
    smaller cache to ship to training machines. Only usable clips are copied. Returns the index."""
    import cv2

    src, dst = Path(src), Path(dst)
    index = json.loads((src / "index.json").read_text())
    old = int(index["settings"]["res"])
    if not 8 <= res <= old:
        raise BadInput(f"res must be between 8 and the cache's {old}, got {res}")
    quality = int(index["settings"]["jpeg_quality"]) if quality is None else int(quality)
    if not 1 <= quality <= 100:
        raise BadInput(f"JPEG quality must be between 1 and 100, got {quality}")
    s = res / old
    if dst.exists():
        raise BadInput("output folder exists; remove it or choose another", dst)
    with atomic_dir(dst) as tmp:  # written aside and moved into place whole: a failed copy leaves nothing
        clips = {n: e for n, e in index["clips"].items() if e.get("verdict") == "usable"}
        for entry in clips.values():
            a, b = src / entry["folder"], tmp / entry["folder"]
            kinds = [("crops", "jpg"), ("masks", "png")] + ([("valid", "png")] if (a / "valid").is_dir() else [])
            for sub, _ in kinds:
                (b / sub).mkdir(parents=True)
            with np.load(a / "track.npz") as z:
                arr = {k: z[k] for k in z.files}
            arr["intr"] = arr["intr"] * s
            arr["landmarks"] = arr["landmarks"] * s
            np.savez_compressed(b / "track.npz", **arr)
            for sub, ext in kinds:
                for f in sorted((a / sub).glob(f"*.{ext}")):
                    img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
                    small = cv2.resize(img, (res, res), interpolation=cv2.INTER_AREA)
                    params = ([cv2.IMWRITE_JPEG_QUALITY, quality] if ext == "jpg"
                              else [cv2.IMWRITE_PNG_COMPRESSION, 9])
                    cv2.imwrite(str(b / sub / f.name), small, params)
            meta = json.loads((a / "meta.json").read_text())
            meta["settings"].update(res=res, jpeg_quality=quality)
            (b / "meta.json").write_text(json.dumps(meta, indent=1))
        out = {**index, "settings": {**index["settings"], "res": res, "jpeg_quality": quality}, "clips": clips,
               "summary": {"usable": len(clips)}, "shrunk_from": str(src)}
        (tmp / "index.json").write_text(json.dumps(out, indent=1))
    return out


def split_cache(src: Path, dst: Path, split: str) -> list[str]:
    """Copy the clips of one split of a tracking cache (its `split.json`) into a cache of their own whose
    split.json holds them under that split alone: training carries only its `train` clips to a GPU machine, and
    a scorer only the `test` clips, with nothing of the other splits beside them. Returns the clips' names."""
    src, dst = Path(src), Path(dst)
    split_file = src / "split.json"
    if not split_file.is_file():
        raise BadInput("the cache has no split.json to take a split from", src)
    splits = json.loads(split_file.read_text())
    if split not in splits:
        raise BadInput(f"split.json has no split '{split}' (it has {', '.join(sorted(splits))})", split_file)
    index = json.loads((src / "index.json").read_text())
    names = list(splits[split])
    missing = [n for n in names if n not in index["clips"] or not (src / index["clips"][n]["folder"]).is_dir()]
    if missing:
        raise BadInput(f"split '{split}' names clips the cache does not hold: {', '.join(missing)}", split_file)
    if dst.exists():
        raise BadInput("output folder exists; remove it or choose another", dst)
    with atomic_dir(dst) as tmp:  # written aside and moved into place whole: a failed copy leaves nothing behind
        clips = {n: index["clips"][n] for n in names}
        for entry in clips.values():
            shutil.copytree(src / entry["folder"], tmp / entry["folder"])
        for extra in sorted(src.glob("*.npz")):  # the canonical face shared by the cache's clips
            shutil.copy2(extra, tmp / extra.name)
        usable = sum(e.get("verdict") == "usable" for e in clips.values())
        out = {**index, "clips": clips, "summary": {"usable": usable}, "split_from": f"{src}:{split}"}
        (tmp / "index.json").write_text(json.dumps(out, indent=1))
        (tmp / "split.json").write_text(json.dumps({k: (names if k == split else []) for k in splits}, indent=1))
    return names


def summary_line(index: dict) -> str:
    """'N clips: U usable; skipped: k no face, ...'."""
    s = index["summary"]
    skipped = ", ".join(f"{s[r]} {r}" for r in SKIP_REASONS if s.get(r))
    return f"{len(index['clips'])} clips: {s.get('usable', 0)} usable" + (f"; skipped: {skipped}" if skipped else "")


def main(argv: list[str] | None = None) -> int:
    """`python -m stages.datasets.video_track DIR [--cache C] [--workers N] ...`: track a corpus ahead of
    training (several GPUs' ranks then only read the cache)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shrink-to", type=Path, default=None,
                    help="after tracking, also write a copy of the cache's usable clips at --shrink-res here")
    ap.add_argument("--shrink-res", type=int, default=256)
    ap.add_argument("--shrink-quality", type=int, default=None,
                    help="JPEG quality of the shrunk crops (default: the cache's own)")
    for f, v in asdict(TrackSettings()).items():
        if f != "version":
            ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    a = ap.parse_args(argv)
    try:
        settings = TrackSettings(**{f: getattr(a, f) for f in asdict(TrackSettings()) if f != "version"})
        index = track_corpus(a.root, a.cache, settings, a.workers, bar_progress, log=print)
    except BadInput as exc:
        print(f"error: {exc}")
        return 2
    print(summary_line(index))
    if a.shrink_to is not None:
        try:
            shrink_cache(a.cache or a.root / CACHE_NAME, a.shrink_to, a.shrink_res, a.shrink_quality)
        except BadInput as exc:
            print(f"error: {exc}")
            return 2
        print(f"wrote {a.shrink_to} ({a.shrink_res}x{a.shrink_res} crops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
