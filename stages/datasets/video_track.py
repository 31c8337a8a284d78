"""Tracking a corpus of monocular talking-head clips once, into a cache that `video:DIR` datasets read.

Per clip (a video file, or a folder of frames) a subsample of frames (every `stride`-th, at most `max_frames`
spread over the clip) goes through MediaPipe's face landmarker (IMAGE mode, up to 2 faces, so a second person is
noticed). A frame with a face gives:
- a head-pose camera: the facial transformation matrix M is solved for a virtual camera of 63° vertical field
  of view, so c2w = inv(M) (translation cm -> m), fl = (H/2)/tan 31.5°, principal point at the image centre;
  the world is MediaPipe's canonical face frame moved by HEAD_CENTRE so that it matches the synthetic heads'
  (head centre at the origin, +y up, face along +z, metres);
- a square crop around the head sphere (`head_radius` metres round the origin, as the dataset loaders and
  `prepare` frame heads), stored as JPEG at `res` pixels, with that crop's camera;
- the ARKit-52 code, the 478 landmarks in crop pixels, a sharpness score (variance of the Laplacian over the
  face box), the number of faces seen;
- a person mask of the crop (`stages.capture.segment.person_mask`), stored as PNG; when the segmenter is not
  installed the clip is cached without masks and a later run adds them.

A clip's folder in the cache is named after the clip and a key hashed from the settings and the file contents
(size plus the first and last 4 MiB of each file: cheap on large corpora, and any re-encode changes it). It is
written under a temporary name and renamed when complete, so a killed run resumes where it stopped and never
leaves a half clip. `CACHE/index.json` lists every clip with its verdict: usable, or skipped for no face,
several faces, too few frames with a face (too short) or too little head rotation (too static).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stages.errors import BadInput

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CACHE_NAME = ".avat3r_video_cache"  # default cache folder inside the corpus
# Where the synthetic heads' centre sits in MediaPipe's canonical face frame (metres): the translation that
# best maps 10 canonical landmarks (eye corners, nose tip, mouth corners, lips, chin) onto the synthetic head's
# keypoints (residual ~5 mm). Crops and cameras are centred on it, as the training studio is.
HEAD_CENTRE = np.array([0.0, 0.017, -0.040])
VFOV_DEG = 63.0  # the landmarker's virtual camera (REFERENCE "Real people")
HASH_BYTES = 4 << 20
SKIP_REASONS = ("no face", "several faces", "too short", "too static", "unreadable")


@dataclass(frozen=True)
class TrackSettings:
    """What a cached track depends on (all of it goes into the cache key)."""

    stride: int = 5  # every stride-th source frame ...
    max_frames: int = 60  # ... and at most this many per clip, evenly spread over the clip
    res: int = 512  # crop side stored in the cache
    head_radius: float = 0.17  # metres round the head centre the crop encloses
    min_frames: int = 12  # fewer usable frames: "too short" (4 inputs + 8 supervision)
    min_spread: float = 3.0  # degrees of head rotation spread below which a clip is "too static" (0: keep all)
    max_multi: float = 0.2  # share of frames with several faces above which a clip is skipped
    jpeg_quality: int = 95
    version: int = 1  # bump when the cache format changes

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def find_clips(root: Path, skip: Path | None = None) -> dict[str, Path]:
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


def clip_key(path: Path, settings: TrackSettings) -> str:
    """Hex key of a clip's contents and the tracking settings."""
    h = hashlib.sha256(settings.key().encode())
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    for p in files:
        _file_digest(h, p)
    return h.hexdigest()


def cache_folder(cache: Path, name: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-80:]
    return Path(cache) / f"{safe}-{key[:12]}"


def frame_picks(count: int, stride: int, max_frames: int) -> list[int]:
    """Source frame indices to track: every stride-th, thinned evenly to at most max_frames."""
    idx = list(range(0, count, max(1, stride)))
    if len(idx) > max_frames:
        idx = [idx[int(round(k))] for k in np.linspace(0, len(idx) - 1, max_frames)]
    return idx


def _frames(path: Path, picks: set[int], last: int) -> Iterator[tuple[int, np.ndarray]]:
    from stages.track.frames import open_frames

    src = open_frames(path)
    for i, frame in enumerate(src):
        if i > last:
            return
        if i in picks:
            yield i, frame


def _count(path: Path) -> int:
    from stages.track.frames import open_frames

    n = open_frames(path).count
    if n is None:
        raise BadInput("cannot count the video's frames", path)
    return n


def head_camera(transform: np.ndarray, width: int, height: int):
    """The landmarker's facial transform -> the full frame's Cameras (1) in our head-centred world."""
    import torch

    from stages.cameras import Cameras
    from stages.track.pose import rotation_part

    M = np.array(transform, np.float64)
    R = rotation_part(M)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ (M[:3, 3] / 100.0) - HEAD_CENTRE
    f = (height / 2.0) / math.tan(math.radians(VFOV_DEG / 2))
    one = torch.ones(1, dtype=torch.float64)
    return Cameras(torch.from_numpy(c2w)[None], one * f, one * f, one * width / 2.0, one * height / 2.0,
                   int(width), int(height))


def sharpness(grey: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian inside the face box (x0, y0, x1, y1): low for blurred or compressed faces."""
    import cv2

    x0, y0, x1, y1 = box
    patch = grey[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)]
    if patch.size < 16:
        return 0.0
    return float(cv2.Laplacian(patch.astype(np.float32), cv2.CV_32F).var())


def _segmenter() -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        from stages.capture.segment import person_mask
    except ImportError:
        return None
    return person_mask


def _crop_one(frame: np.ndarray, face, settings: TrackSettings) -> dict:
    import cv2

    from stages.datasets.views import apply_crop, crop_map, cropped_rig, head_crops

    h, w = frame.shape[:2]
    cam = head_camera(face.transform, w, h)
    crop = head_crops(cam, settings.head_radius, "frame")[0]
    cmap = crop_map(cam, crop, settings.res, w, h)
    img = apply_crop(frame.astype(np.float32), cmap)
    img8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    cc = cropped_rig(cam, [crop], settings.res)
    s = settings.res / crop.size
    lm = (face.landmarks[:, :2] - np.array([crop.x0, crop.y0], np.float32)) * s
    lo, hi = lm.min(0), lm.max(0)
    grey = cv2.cvtColor(img8, cv2.COLOR_RGB2GRAY)
    return {"img": img8, "valid": cmap.valid, "c2w": cc.c2w[0].numpy(),
            "intr": np.array([float(cc.fx[0]), float(cc.fy[0]), float(cc.cx[0]), float(cc.cy[0])]),
            "landmarks": lm.astype(np.float32), "code": face.blendshapes.astype(np.float32),
            "sharp": sharpness(grey, (int(lo[0]), int(lo[1]), int(hi[0]) + 1, int(hi[1]) + 1)),
            "rect": np.array([crop.x0, crop.y0, crop.size])}


def rotation_spread(c2w: np.ndarray) -> float:
    """Largest angle (degrees) between two cameras' viewing directions."""
    d = -c2w[:, :3, 2]
    cos = np.clip(d @ d.T, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos.min()))) if len(d) else 0.0


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


def track_clip(path: Path, dest: Path, settings: TrackSettings, key: str, name: str) -> dict:
    """Track one clip into the cache folder `dest` (written under a temporary name, then renamed)."""
    import cv2

    from stages.track.landmarker import detect, open_landmarker

    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "crops").mkdir(parents=True)
    segment = _segmenter()
    if segment is not None:
        (tmp / "masks").mkdir()
    rows, picks_n = [], 0
    meta = {"name": name, "source": str(path), "key": key, "settings": asdict(settings), "masks": segment is not None}
    try:
        count = _count(path)
        picks = frame_picks(count, settings.stride, settings.max_frames)
        picks_n = len(picks)
        with open_landmarker(num_faces=2) as lm:
            for i, frame in _frames(path, set(picks), picks[-1] if picks else -1):
                face = detect(lm, frame)
                if face is None:
                    continue
                row = _crop_one(frame, face, settings)
                row["frame"], row["faces"] = i, lm.faces_seen
                k = len(rows)
                cv2.imwrite(str(tmp / "crops" / f"{k:05d}.jpg"), cv2.cvtColor(row["img"], cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
                if segment is not None:
                    m = np.clip(segment(row["img"]) * row["valid"], 0, 1)
                    cv2.imwrite(str(tmp / "masks" / f"{k:05d}.png"), (m * 255 + 0.5).astype(np.uint8))
                del row["img"]
                rows.append(row)
                meta["size"] = [int(frame.shape[1]), int(frame.shape[0])]
        meta["frame_count"] = count
    except BadInput as exc:
        meta["verdict"], meta["why"] = "unreadable", str(exc)
    if rows:
        arr = {k: np.stack([r[k] for r in rows]) for k in ("c2w", "intr", "landmarks", "code", "sharp", "frame",
                                                            "faces", "rect")}
        np.savez(tmp / "track.npz", **arr)
        single = arr["faces"] <= 1
        spread = rotation_spread(arr["c2w"][single])
        meta.update(spread_deg=round(spread, 2), frames=len(rows), single_face_frames=int(single.sum()))
        meta["verdict"] = verdict(len(rows), int((~single).sum()), int(single.sum()), spread, settings)
    elif "verdict" not in meta:
        meta["verdict"] = "no face"
    meta["tracked_frames"] = picks_n
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return meta


def add_masks(folder: Path) -> dict:
    """Person masks for a clip cached before the segmenter was installed (folder rewritten atomically)."""
    import cv2

    segment = _segmenter()
    meta = json.loads((folder / "meta.json").read_text())
    if segment is None or meta.get("masks") or not (folder / "track.npz").exists():
        return meta
    tmp = folder / "masks.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    rect = np.load(folder / "track.npz")["rect"]
    from stages.capture.imaging import SquareCrop

    w, h = meta["size"]
    res = meta["settings"]["res"]
    for k in range(len(rect)):
        img = cv2.cvtColor(cv2.imread(str(folder / "crops" / f"{k:05d}.jpg")), cv2.COLOR_BGR2RGB)
        valid = crop_valid(SquareCrop(*(int(v) for v in rect[k])), w, h, res)
        m = np.clip(segment(img) * valid, 0, 1)
        cv2.imwrite(str(tmp / f"{k:05d}.png"), (m * 255 + 0.5).astype(np.uint8))
    os.replace(tmp, folder / "masks")
    meta["masks"] = True
    (folder / "meta.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(folder / "meta.json.tmp", folder / "meta.json")
    return meta


def crop_valid(crop, width: int, height: int, res: int) -> np.ndarray:
    """(res, res) float32: the share of each crop pixel that lies inside the photo (0 in the padding)."""
    import cv2

    n = max(res, min(crop.size, 2 * res))
    g = (np.arange(n) + 0.5) * (crop.size / n)
    inx = ((g + crop.x0) >= 0) & ((g + crop.x0) <= width)
    iny = ((g + crop.y0) >= 0) & ((g + crop.y0) <= height)
    valid = (iny[:, None] & inx[None, :]).astype(np.float32)
    return cv2.resize(valid, (res, res), interpolation=cv2.INTER_AREA) if n != res else valid


def _work(job: tuple[str, str, str, TrackSettings, str]) -> dict:
    name, path, dest, settings, key = job
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return track_clip(Path(path), Path(dest), settings, key, name)
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


def track_corpus(root: Path, cache: Path | None = None, settings: TrackSettings | None = None, workers: int = 1,
                 progress: Progress = _no_progress, log: Callable[[str], None] | None = None) -> dict:
    """Track every clip under root that the cache lacks (in `workers` processes) and write CACHE/index.json:
    {"clips": {name: {"folder", "verdict", ...}}, "summary": {verdict: count}}. Returns that index."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput("video corpus folder not found", root)
    settings = settings or TrackSettings()
    cache = Path(cache) if cache is not None else root / CACHE_NAME
    clips = find_clips(root, skip=cache)
    if not clips:
        raise BadInput(f"no clips ({', '.join(VIDEO_SUFFIXES)} files or folders of frames) found", root)
    cache.mkdir(parents=True, exist_ok=True)
    _dead_temporaries(cache)
    entries: dict[str, dict] = {}
    jobs = []
    for name, path in clips.items():
        key = clip_key(path, settings)
        dest = cache_folder(cache, name, key)
        if (dest / "meta.json").is_file():
            meta = add_masks(dest)
            entries[name] = meta
        else:
            jobs.append((name, str(path), str(dest), settings, key))
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
            "verdict", "why", "frames", "single_face_frames", "spread_deg", "masks", "frame_count", "size")}}
        v = meta.get("verdict", "unreadable")
        index["summary"][v] = index["summary"].get(v, 0) + 1
    tmp = cache / f"index.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, cache / "index.json")
    return index


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
    for f, v in asdict(TrackSettings()).items():
        if f != "version":
            ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    a = ap.parse_args(argv)
    settings = TrackSettings(**{f: getattr(a, f) for f in asdict(TrackSettings()) if f != "version"})
    try:
        from tqdm import tqdm

        def progress(items: Iterable, desc: str, total: int) -> Iterable:
            return tqdm(items, desc=desc, total=total)
    except ImportError:
        progress = _no_progress
    try:
        index = track_corpus(a.root, a.cache, settings, a.workers, progress, log=print)
    except BadInput as exc:
        print(f"error: {exc}")
        return 2
    print(summary_line(index))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
