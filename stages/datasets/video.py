"""`video:DIR`: a corpus of monocular talking-head clips (VFHQ, HDTF, CelebV-HQ, phone videos) as a dataset.

`DIR` may also be a tracking cache itself (a folder with `index.json`, e.g. copied to a GPU machine without the
source clips): it is read as it is, with the settings it was tracked with.

A subject is a clip; its timesteps are its tracked frames (0..n-1 in time order, the usable ones: one face);
each timestep has ONE camera, the head-pose camera of that frame (see `stages.datasets.video_track`), so the
dataset looks like a one-camera rig whose camera moves every frame. Crops, masks, codes and cameras come from
the tracking cache, which is built on first use (or ahead with `python -m stages.datasets.video_track`).

Training does not use the multi-view protocol here (one camera per timestep): `stages.train.video_data`
draws inputs and supervision frames at different times; evaluation uses `episode` (self-reenactment).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras
from stages.datasets.base import HeadDataset
from stages.datasets.landmark_store import LANDMARKS_FILE, load_canonical_face_file, load_clip_landmarks
from stages.datasets.video_track import CACHE_NAME, TrackSettings, bar_progress, summary_line, track_corpus
from stages.errors import BadInput

SHARPNESS_FLOOR = 0.5  # evaluation skips frames below this share of the clip's median sharpness (motion blur)
TRACK_OPTIONS = ("stride", "max_frames", "res", "head_radius", "min_frames", "min_spread", "fov")


def _number(text: str, key: str, kind: type):
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if not value >= 0:
        raise BadInput(f"video loader option {key}={text!r}: expected a non-negative {kind.__name__}")
    return value


class VideoDataset(HeadDataset):
    """Monocular clips under `root` (nested folders allowed), tracked into `cache=DIR` (default
    ROOT/.avat3r_video_cache). Options: cache, workers (tracking processes), stride, max_frames, res,
    head_radius, min_frames, min_spread, fov (see TrackSettings), source_part (share of a clip that evaluation draws
    its inputs from, 0.6), min_sharpness (evaluation skips frames below this share of the clip's median
    sharpness, 0.5; 0 keeps all)."""

    kind = "video"
    OPTIONS = ("cache", "workers", "source_part", "min_sharpness", "scale", *TRACK_OPTIONS)

    def __init__(self, root: str | Path, size: int, options: dict[str, str] | None = None, log=None, progress=None):
        super().__init__(root, size, options)
        if self.options.get("scale", "metric") != "metric":
            raise BadInput("video:DIR worlds are in metres (the average face's size); only scale=metric applies")
        defaults = TrackSettings()
        kw = {}
        for key in TRACK_OPTIONS:
            if key in self.options:
                kw[key] = _number(self.options[key], key, type(getattr(defaults, key)))
        if kw.get("stride", 1) < 1 or kw.get("max_frames", 1) < 1 or kw.get("res", 8) < 8:
            raise BadInput("video loader options stride and max_frames must be at least 1, res at least 8")
        self.settings = TrackSettings(**kw)
        self.cache = Path(self.options.get("cache") or self.root / CACHE_NAME).expanduser()
        self.source_part = float(_number(self.options.get("source_part", "0.6"), "source_part", float))
        if not 0 < self.source_part < 1:
            raise BadInput(f"video loader option source_part={self.source_part}: expected a number between 0 and 1")
        self.min_sharpness = float(_number(self.options.get("min_sharpness", str(SHARPNESS_FLOOR)), "min_sharpness",
                                           float))
        workers = int(_number(self.options.get("workers", "1"), "workers", int))
        if (self.root / "index.json").is_file() and "cache" not in self.options:
            # DIR is a tracking cache itself (copied to a GPU machine without the clips): read it as it is
            self.cache = self.root
            self.index = json.loads((self.root / "index.json").read_text())
            self.settings = TrackSettings(**self.index["settings"])
            self._names = sorted(n for n, e in self.index["clips"].items() if e.get("verdict") == "usable")
            return
        index_path = self.cache / "index.json"
        index = json.loads(index_path.read_text()) if index_path.is_file() else None
        if index is None or index.get("settings") != json.loads(self.settings.key()) or self._stale(index):
            log = log or _stderr
            index = track_corpus(self.root, self.cache, self.settings, max(1, workers), progress or bar_progress,
                                 log=log)
            log(summary_line(index))
        self.index = index
        self._names = sorted(n for n, e in index["clips"].items() if e.get("verdict") == "usable")

    def _stale(self, index: dict) -> bool:
        """True when the corpus's clips are not those the index lists."""
        from stages.datasets.video_track import find_clips

        return set(find_clips(self.root, skip=self.cache)) != set(index.get("clips", {}))

    # ----- the clip's cached track -------------------------------------------------------------------------
    def folder(self, subject: str) -> Path:
        self.check_subject(subject)
        return self.cache / self.index["clips"][subject]["folder"]

    def track(self, subject: str) -> dict:
        """The usable (single-face) frames' arrays of a clip: c2w, intr (fx fy cx cy at the cache's res),
        landmarks, code, sharp, frame, rect, and `file` (the crop number of each)."""
        return _load_track(str(self.folder(subject)))

    @property
    def expression_space(self) -> tuple[str, int]:
        return ("arkit52", 52)

    def all_subjects(self) -> list[str]:
        return list(self._names)

    def timesteps(self, subject: str) -> list[int]:
        return list(range(len(self.track(subject)["frame"])))

    def camera_names(self, subject: str) -> list[str]:
        return ["video"]

    def cameras(self, subject: str, t: int) -> Cameras:
        tr = self.track(subject)
        s = self.size / self.settings.res
        fx, fy, cx, cy = (float(v) * s for v in tr["intr"][t])
        one = torch.ones(1)
        return Cameras(torch.from_numpy(tr["c2w"][t]).float()[None], one * fx, one * fy, one * cx, one * cy,
                       self.size, self.size)

    def rotations(self, subject: str) -> np.ndarray:
        """(T, 3, 3) camera-to-world rotations of every timestep (the head pose, inverted)."""
        return self.track(subject)["c2w"][:, :3, :3]

    def landmarks(self, subject: str, t: int) -> np.ndarray:
        """(478, 2) face landmarks of timestep t in pixels of the size x size crop."""
        return self.track(subject)["landmarks"][t] * (self.size / self.settings.res)

    def face_landmarks(self, subject: str, t: int) -> np.ndarray | None:
        """(468, 3) landmarker output on timestep t's crop in pixels of the size x size crop, None where it found
        no face. Needs `python -m stages.datasets.face_landmarks CACHE` (BadInput otherwise)."""
        lms, size = _load_face_landmarks(str(self.folder(subject)))
        lm = lms[t]
        return None if not np.isfinite(lm).all() else lm * (self.size / size)

    def canonical_face(self):
        """The canonical face the cache carries (see stages.datasets.landmark_store), or None."""
        return load_canonical_face_file(self.cache)

    def load(self, subject: str, t: int, cam_idx: int = 0) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        if cam_idx != 0:
            raise BadInput(f"clip {subject} has one camera per frame, not camera {cam_idx}", self.root)
        folder = self.folder(subject)
        k = int(self.track(subject)["file"][t])
        bgr = cv2.imread(str(folder / "crops" / f"{k:05d}.jpg"))
        if bgr is None:
            raise BadInput("cached crop is missing or unreadable; delete the clip's cache folder to re-track",
                           folder / "crops" / f"{k:05d}.jpg")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        mpath = folder / "masks" / f"{k:05d}.png"
        mask = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE) if mpath.is_file() else None
        mask = np.ones(rgb.shape[:2], np.float32) if mask is None else mask.astype(np.float32) / 255.0
        return np.clip(self._at_size(rgb), 0, 1), np.clip(self._at_size(mask), 0, 1)

    def _at_size(self, img: np.ndarray) -> np.ndarray:
        """A cached map resampled to the dataset's size: area-filtered when shrinking, bilinear when growing."""
        import cv2

        if img.shape[0] == self.size:
            return img
        interp = cv2.INTER_AREA if img.shape[0] > self.size else cv2.INTER_LINEAR
        return cv2.resize(img, (self.size, self.size), interpolation=interp)

    def frame_coverage(self, subject: str, t: int) -> np.ndarray | None:
        """(size, size) in [0, 1]: how much of each crop pixel lies inside the video frame (0 where the crop's
        black padding is), or None for a cache tracked before these maps were stored. The masks are 0 past the
        frame too, so without this map a loss would read "no person" where the video shows nothing."""
        import cv2

        if not self.has_frame_coverage(subject):
            return None
        k = int(self.track(subject)["file"][t])
        path = self.folder(subject) / "valid" / f"{k:05d}.png"
        cover = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if cover is None:
            raise BadInput("cached frame-coverage map is missing or unreadable; delete the clip's cache folder to "
                           "re-track", path)
        return np.clip(self._at_size(cover.astype(np.float32) / 255.0), 0, 1)

    def has_frame_coverage(self, subject: str) -> bool:
        """True when the clip's cache stores frame-coverage maps (caches tracked since they were added)."""
        return (self.folder(subject) / "valid").is_dir()

    def has_masks(self, subject: str) -> bool:
        return bool(self.index["clips"][subject].get("masks"))

    def codes(self, subject: str, t: int) -> np.ndarray | None:
        return self.track(subject)["code"][t].astype(np.float32)

    def describe(self, subject: str, t: int) -> str:
        return f"{subject} frame {int(self.track(subject)['frame'][t])}"

    # ----- self-reenactment --------------------------------------------------------------------------------
    def reenactment(self, subject: str, n_inputs: int = 4, n_targets: int = 8) -> tuple[list[int], list[int]]:
        """(input timesteps, target timesteps) of the self-reenactment protocol, as the real dev cases are cut:
        frames blurrier than half the clip's median sharpness are left out; inputs are the most frontal frame
        of the first `source_part` of the clip plus the farthest-first head rotations after it, targets
        `n_targets` frames evenly spread over the rest. Deterministic."""
        tr = self.track(subject)
        sharp = tr["sharp"]
        ts = [t for t in self.timesteps(subject) if sharp[t] >= self.min_sharpness * float(np.median(sharp))]
        cut = max(n_inputs, int(round(len(ts) * self.source_part)))
        if len(ts) - cut < 1:
            raise BadInput(f"clip {subject} has {len(ts)} sharp frames: too few to keep {n_inputs} inputs and "
                           "targets apart", self.root)
        early = ts[:cut]
        rots = self.rotations(subject)[early]
        frontal = int(np.argmax(rots[:, 2, 2]))  # the camera looking most straight at the face
        inputs = sorted(early[i] for i in farthest_rotations(rots, n_inputs, frontal))
        later = ts[cut:]
        pick = np.unique(np.round(np.linspace(0, len(later) - 1, min(n_targets, len(later)))).astype(int))
        return inputs, [later[i] for i in pick]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _view_angles(rotations: np.ndarray) -> Callable[[int], np.ndarray]:
    """angle_to(i): the angles (radians) between every head rotation's viewing direction and rotation i's."""
    d = -np.asarray(rotations)[:, :, 2]
    return lambda i: np.arccos(np.clip(d @ d[i], -1, 1))


def farthest_rotations(rotations: np.ndarray, k: int, first: int = 0) -> list[int]:
    """k indices spread over head rotations by farthest-point sampling on viewing directions (starting at
    `first`); ties resolve to the earliest frame, so the choice is deterministic."""
    from stages.farthest import farthest_point_order

    return sorted(farthest_point_order(len(rotations), k, first, _view_angles(rotations)))


def nearest_rotations(rotations: np.ndarray, k: int, first: int) -> list[int]:
    """`first` and the k - 1 frames whose viewing directions are nearest its own (sorted): an input set that
    hardly turns, as a phone clip of someone looking into the camera gives (`--narrow-video-inputs`)."""
    angle = _view_angles(rotations)(first)
    angle[first] = -1.0  # the anchor itself comes first even where another frame has the same direction
    return sorted(np.argsort(angle, kind="stable")[:k].tolist())


@lru_cache(maxsize=256)
def _load_face_landmarks(folder: str) -> tuple[np.ndarray, int]:
    """A clip's stored landmarks and their size (cached per process: every video example reads 4 frames'
    worth); BadInput, which is not cached, while the clip has none."""
    found = load_clip_landmarks(Path(folder))
    if found is None:
        raise BadInput(f"no {LANDMARKS_FILE}; run python -m stages.datasets.face_landmarks on the cache first",
                       folder)
    return found


@lru_cache(maxsize=256)
def _load_track(folder: str) -> dict:
    """A clip's track.npz restricted to the frames with exactly one face (cached per process)."""
    with np.load(Path(folder) / "track.npz") as z:
        raw = {k: z[k] for k in z.files}
    keep = np.flatnonzero(raw["faces"] <= 1)
    out = {k: v[keep] for k, v in raw.items()}
    out["file"] = keep
    return out
