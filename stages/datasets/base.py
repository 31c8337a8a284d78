"""The one interface `train`, `evaluate` and `prepare` read multi-view head datasets through.

A dataset is a set of subjects; a subject has timesteps (frames: one expression each) seen by the same cameras.
Every loader gives the same view of its data, already in the toolkit's conventions (SPEC section 2):
- `cameras(subject, t)`: a `Cameras` batch, one per camera of the subject, in a normalised world (metres by
  default, head centre near the origin, +y up, face along +z, OpenGL camera-to-world) and with the intrinsics of
  the square `size`x`size` crop around the head that `load` returns. Cameras may move from timestep to
  timestep (Ava256 moves them into head space with the per-frame head pose).
- `load(subject, t, cam_idx)`: that crop, undistorted: rgb (size, size, 3) float32 in [0, 1] and mask (size,
  size) float32 in [0, 1] (all ones when the dataset has no masks: see `has_masks`).
- `codes(subject, t)`: the expression code of that timestep in `expression_space`, or None when unknown.

Loaders are lazy and cheap to pickle: they keep paths and parsed calibration only, and open zips and videos on
first use in each process (see `stages.datasets.media`), so a multi-worker torch DataLoader works and nothing is
decoded into RAM ahead of time.

Spec strings (`--data`): `synth:PATH` or a plain `PATH` (a SPEC section 7 dataset), `ava256:PATH`,
`nersemble:PATH`, `video:PATH` (monocular clips, `stages.datasets.video`); loader options follow a `?` as
`key=value` pairs joined by `&`, for example
`ava256:/data/ava?codes=/data/ava_codes&space=ava256vae`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.cameras import Cameras
from stages.capture.normalise import Normalisation
from stages.datasets.splits import split_names
from stages.errors import BadInput

SPLITS = ("train", "val", "test", "all")
KINDS = ("synth", "ava256", "nersemble", "video")
SPLIT_FILE = "split.json"  # optional, in a dataset's root: {"train": [...], "val": [...], "test": [...]}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed `--data` string."""

    kind: str  # one of KINDS
    path: Path
    options: dict[str, str] = field(default_factory=dict)


def parse_spec(spec: str | Path) -> DatasetSpec:
    """`kind:PATH[?key=value&...]` or a plain PATH (a SPEC section 7 dataset) -> DatasetSpec."""
    text = str(spec)
    kind, rest = "synth", text
    head, sep, tail = text.partition(":")
    if sep and head in KINDS:
        kind, rest = head, tail
    elif sep and head.isalpha() and len(head) > 1 and not Path(text).exists():
        raise BadInput(f"--data {text!r}: unknown dataset kind {head!r} (expected one of {', '.join(KINDS)} "
                       "followed by ':PATH', or a plain dataset folder)")
    path, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BadInput(f"--data {text!r}: option {item!r} must be key=value")
        options[key] = value
    if not path:
        raise BadInput(f"--data {text!r}: no dataset path")
    return DatasetSpec(kind, Path(path).expanduser(), options)


def some_of(names: list[str], n: int = 6) -> str:
    """The first n names, comma-separated, with ', ...' when there are more (for error messages)."""
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


class HeadDataset(ABC):
    """A multi-view, multi-expression head dataset (see the module docstring for the conventions)."""

    kind: str = ""
    OPTIONS: tuple[str, ...] = ()  # the loader options (after '?' in a spec) this loader understands

    def __init__(self, root: str | Path, size: int, options: dict[str, str] | None = None):
        if not 8 <= int(size) <= 4096:
            raise BadInput(f"image size must be between 8 and 4096, got {size}")
        self.root = Path(root)
        self.size = int(size)
        self.options = dict(options or {})
        unknown = sorted(set(self.options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(self.OPTIONS) or "none"
            raise BadInput(f"unknown {self.kind} loader option {unknown[0]!r} (known: {known})")
        if not self.root.is_dir():
            raise BadInput("dataset folder not found", self.root)

    # ----- what every loader provides ----------------------------------------------------------------------
    @property
    @abstractmethod
    def expression_space(self) -> tuple[str, int]:
        """(name, dimension) of the codes `codes` returns; ("none", 0) when the dataset has none."""

    @abstractmethod
    def all_subjects(self) -> list[str]:
        """Every subject, sorted."""

    @abstractmethod
    def timesteps(self, subject: str) -> list[int]:
        """The subject's timesteps (sorted ints; their meaning is the loader's, see `describe`)."""

    @abstractmethod
    def camera_names(self, subject: str) -> list[str]:
        """Names of the subject's cameras, in the order `cameras` and `load` index them."""

    @abstractmethod
    def cameras(self, subject: str, t: int) -> Cameras:
        """All cameras of the subject at timestep t, for size x size crops, in the normalised world."""

    @abstractmethod
    def load(self, subject: str, t: int, cam_idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (size, size, 3), mask (size, size)) float32 in [0, 1] for one camera at one timestep."""

    @abstractmethod
    def codes(self, subject: str, t: int) -> np.ndarray | None:
        """The expression code (D,) float32 at timestep t, or None when the dataset has none for it."""

    # ----- shared behaviour --------------------------------------------------------------------------------
    def has_masks(self, subject: str) -> bool:
        """False when `load` returns all-ones masks because the dataset ships none for this subject."""
        return True

    def normalisation(self, subject: str) -> Normalisation | None:
        """How the dataset's own world (metres; Ava256: head space) maps into ours, or None when it is ours
        already (SPEC section 7 datasets)."""
        return None

    def describe(self, subject: str, t: int) -> str:
        """A human-readable name for a timestep (a frame number, a sequence and frame)."""
        return f"{subject} t={t}"

    def splits(self) -> dict[str, list[str]]:
        """train/val/test subject lists: ROOT/split.json when present, else a deterministic split by name."""
        names = self.all_subjects()
        path = self.root / SPLIT_FILE
        if path.is_file():
            from stages.io import read_json

            raw = read_json(path)
            if not isinstance(raw, dict):
                raise BadInput("expected an object of split name -> subject list", path)
            out = {k: [str(s) for s in raw.get(k, [])] for k in ("train", "val", "test")}
            unknown = sorted({s for v in out.values() for s in v} - set(names))
            if unknown:
                raise BadInput(f"unknown subjects {unknown[:3]}", path)
            return out
        return split_names(names)

    def subjects(self, split: str = "train") -> list[str]:
        """The subjects of a split (`train`, `val`, `test`, or `all`)."""
        if split not in SPLITS:
            raise BadInput(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        if split == "all":
            return self.all_subjects()
        return list(self.splits()[split])

    def check_subject(self, subject: str) -> None:
        """BadInput naming the dataset when a subject is not in it."""
        if subject not in self.all_subjects():
            raise BadInput(f"no subject {subject!r} (have {some_of(self.all_subjects())})", self.root)

    def option(self, key: str, default: str | None = None) -> str | None:
        return self.options.get(key, default)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, size={self.size})"
