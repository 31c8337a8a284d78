"""The annotation files of the big monocular corpora, read so that a folder of their *raw* videos is cut into
the annotated clips (a time span and, where annotated, the face's box) instead of being tracked whole.

- **VFHQ** `meta_info/*.txt`, one file per clip, named `Clip+VIDEO+P<person>+C<clip>+F<first>-<last>.txt`,
  with lines `H: <height>`, `W: <width>`, `FPS: <rate>` and `CROP: x0 y0 x1 y1` (the clip's face crop in pixels
  of the source video) before the per-frame landmark table (not read). The frames tracked are `first + 1` to
  `last - 1`, one inside each end, so a shot change on a boundary frame is never part of the clip.
- **HDTF** `*_annotion_time.txt` (the dataset's spelling; `_annotation_time` is read too): per line a video
  file name and one or more `mm:ss-mm:ss` (or `hh:mm:ss`) ranges; each range is a clip. HDTF has no face boxes.
- **CelebV-HQ** `celebvhq_info.json`: `{"clips": {CLIP_ID: {"ytb_id", "duration": {"start_sec", "end_sec"},
  "bbox": {"top", "bottom", "left", "right"}}}}` with the box as fractions of the frame. The released clips are
  already cut and named by CLIP_ID: a file with that name is a clip as it is; only a raw video named by
  `ytb_id` is cut.

A span's video is found by file stem anywhere under the corpus; annotations whose video is absent are ignored.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from stages.errors import BadInput

HDTF_SUFFIXES = ("_annotion_time.txt", "_annotation_time.txt")
CELEBVHQ_FILE = "celebvhq_info.json"


@dataclass(frozen=True)
class ClipSpan:
    """One annotated clip of a longer video."""

    video: str  # file stem of the source video the annotation names
    label: str  # the annotation's own name for the clip
    corpus: str  # vfhq | hdtf | celebvhq
    start: float | None = None  # seconds from the video's start (None: its start)
    end: float | None = None  # seconds (None: its end)
    first_frame: int | None = None  # or frame indices, inclusive (VFHQ)
    last_frame: int | None = None
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1: pixels, or fractions if box_relative
    box_relative: bool = False

    def frame_range(self, fps: float, count: int) -> tuple[int, int]:
        """Inclusive source-frame range of the clip, within [0, count - 1] (empty when a > b)."""
        a = self.first_frame if self.first_frame is not None else (
            int(round(self.start * fps)) if self.start is not None else 0)
        b = self.last_frame if self.last_frame is not None else (
            int(round(self.end * fps)) - 1 if self.end is not None else count - 1)
        return max(0, a), min(count - 1, b)

    def box_px(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """The face box in whole pixels of a width x height frame, clamped to it (None: no box)."""
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        if self.box_relative:
            x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
        x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
        x1, y1 = min(width, int(round(x1))), min(height, int(round(y1)))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def describe(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _seconds(text: str, path: Path) -> float:
    parts = text.strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BadInput(f"cannot read the time {text!r}", path) from None
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values):
        raise BadInput(f"cannot read the time {text!r}", path)
    out = 0.0
    for v in values:
        out = out * 60 + v
    return out


def parse_vfhq(path: Path) -> ClipSpan:
    """One VFHQ meta-info file -> its clip."""
    path = Path(path)
    m = re.match(r"^(?:[^+]*\+)?(.+)\+P(\d+)\+C(\d+)\+F(\d+)-(\d+)$", path.stem)
    if m is None:
        raise BadInput("not a VFHQ meta-info name (Clip+VIDEO+P0+C0+F<first>-<last>.txt)", path)
    video, first, last = m.group(1), int(m.group(4)), int(m.group(5))
    box = None
    for line in path.read_text(errors="replace").splitlines():
        if line.strip().upper().startswith("CROP"):
            nums = re.findall(r"-?\d+(?:\.\d+)?", line)
            if len(nums) < 4:
                raise BadInput("its CROP line does not hold four numbers", path)
            box = tuple(float(v) for v in nums[-4:])
    return ClipSpan(video=video, label=path.stem, corpus="vfhq", first_frame=first + 1, last_frame=last - 1,
                    box=box)


def parse_hdtf(path: Path) -> list[ClipSpan]:
    """One HDTF `*_annotion_time.txt` -> a clip per listed range."""
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        stem = Path(fields[0]).stem
        if len(fields) < 2:
            raise BadInput(f"line {n} names {fields[0]} but no time range", path)
        for k, rng in enumerate(fields[1:]):
            start, dash, end = rng.partition("-")
            if not dash:
                raise BadInput(f"line {n}: {rng!r} is not a start-end range", path)
            a, b = _seconds(start, path), _seconds(end, path)
            if b <= a:
                raise BadInput(f"line {n}: the range {rng!r} ends before it starts", path)
            out.append(ClipSpan(video=stem, label=f"{stem}_{k}", corpus="hdtf", start=a, end=b))
    return out


def parse_celebvhq(path: Path) -> list[ClipSpan]:
    """`celebvhq_info.json` -> a clip per entry (span and relative face box in the raw video)."""
    path = Path(path)
    try:
        clips = json.loads(path.read_text())["clips"]
        out = []
        for label, c in clips.items():
            d, b = c["duration"], c.get("bbox")
            box = (float(b["left"]), float(b["top"]), float(b["right"]), float(b["bottom"])) if b else None
            out.append(ClipSpan(video=str(c["ytb_id"]), label=str(label), corpus="celebvhq",
                                start=float(d["start_sec"]), end=float(d["end_sec"]), box=box, box_relative=True))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"not a CelebV-HQ info file ({type(exc).__name__}: {exc})", path) from exc
    return out


def find_annotations(root: Path, skip: Path | None = None) -> list[ClipSpan]:
    """Every annotated clip described by annotation files under root (hidden folders and `skip` ignored)."""
    spans: list[ClipSpan] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (skip is None or here / d != skip))
        for f in sorted(filenames):
            p = here / f
            if f == CELEBVHQ_FILE:
                spans += parse_celebvhq(p)
            elif f.endswith(HDTF_SUFFIXES):
                spans += parse_hdtf(p)
            elif f.startswith("Clip+") and f.endswith(".txt"):
                spans.append(parse_vfhq(p))
    return spans
