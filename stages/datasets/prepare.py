"""`avat3r prepare ava256:PATH | nersemble:PATH | synth:PATH`: one timestep of a dataset subject -> a capture
folder (SPEC section 2) with the dataset's own crops, masks, normalised cameras and expression code.

The views are the cameras named with `--cameras`, or by default `views` of them spread by farthest-viewpoint
sampling (starting from the most central camera, as `prepare` does for photos). Every view shows the same
timestep, so every frame of the capture records the same expression code when the dataset has one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.cameras import Cameras
from stages.capture import MAX_VIEWS, write_capture
from stages.datasets.base import HeadDataset, some_of
from stages.datasets.registry import open_dataset
from stages.errors import BadInput


@dataclass
class DatasetPick:
    """What to take from a dataset: None means the default (the only subject, the first timestep with a code,
    the farthest-spread cameras)."""

    subject: str | None = None
    frame: int | None = None
    sequence: str | None = None  # NeRSemble only
    cameras: list[str] | None = None
    views: int = 4


@dataclass
class DatasetPrepared:
    out: Path
    subject: str
    timestep: int
    description: str
    camera_names: list[str]
    expression_space: str | None
    notes: list[str] = field(default_factory=list)  # what the user should know about the capture's world


def world_note(ds: HeadDataset, has_code: bool) -> str | None:
    """NeRSemble with head_pose=none keeps the cameras in the rig's world, so the head need not face +z (up to
    ~27 degrees off in the benchmark's sequences): say so, and how to get the head's frame when it is tracked."""
    if ds.kind != "nersemble" or getattr(ds, "head_pose", "none") != "none":
        return None
    fix = ("; add ?head_pose=flame to the source to move them into the FLAME-tracked head's frame" if has_code
           else " (this sequence has no FLAME tracking to move them into the head's frame)")
    return ("cameras stay in the NeRSemble rig's world (centred and scaled, not turned to the head), so the head "
            f"may not face +z as the model expects{fix}")


def _subject(ds: HeadDataset, name: str | None) -> str:
    names = ds.all_subjects()
    if name is None:
        if len(names) != 1:
            raise BadInput(f"the dataset has {len(names)} subjects; pass --subject (one of {some_of(names)})",
                           ds.root)
        return names[0]
    ds.check_subject(name)
    return name


def _timestep(ds: HeadDataset, subject: str, frame: int | None, sequence: str | None) -> int:
    if ds.kind == "nersemble":
        from stages.datasets.nersemble import NeRSembleDataset

        assert isinstance(ds, NeRSembleDataset)
        if sequence is None:
            seqs = sorted({ds.locate(subject, t)[0] for t in ds.timesteps(subject)})
            if len(seqs) != 1 and frame is not None:
                raise BadInput(f"participant {subject} has {len(seqs)} sequences; pass --sequence (one of "
                               f"{some_of(seqs)})", ds.root)
            sequence = seqs[0]
        if frame is None:
            ts = [t for t in ds.timesteps(subject) if ds.locate(subject, t)[0] == sequence]
            if not ts:
                raise BadInput(f"no sequence {sequence!r}", ds.root)
            return next((t for t in ts if ds.codes(subject, t) is not None), ts[0])
        return ds.timestep_of(subject, sequence, frame)
    if sequence is not None:
        raise BadInput(f"--sequence is for NeRSemble; {ds.kind} timesteps are plain frame numbers")
    ts = ds.timesteps(subject)
    if frame is None:
        return next((t for t in ts if ds.codes(subject, t) is not None), ts[0])
    if int(frame) not in set(ts):
        raise BadInput(f"subject {subject} has no frame {frame} (frames {ts[0]}..{ts[-1]}, {len(ts)} in all)",
                       ds.root)
    return int(frame)


def _views(ds: HeadDataset, subject: str, cams: Cameras, pick: DatasetPick) -> list[int]:
    from stages.capture.prepare import select_views

    names = ds.camera_names(subject)
    if pick.cameras:
        unknown = [c for c in pick.cameras if c not in names]
        if unknown:
            raise BadInput(f"no camera {unknown[0]!r} for subject {subject} (have {some_of(names, 8)})", ds.root)
        if len(pick.cameras) > MAX_VIEWS:
            raise BadInput(f"{len(pick.cameras)} cameras, but a capture takes at most {MAX_VIEWS}")
        return [names.index(c) for c in pick.cameras]
    if not 1 <= pick.views <= min(MAX_VIEWS, len(names)):
        raise BadInput(f"--views must be between 1 and {min(MAX_VIEWS, len(names))}, got {pick.views}")
    return select_views(cams, pick.views)


def prepare_from_dataset(spec: str, out: str | Path, res: int, pick: DatasetPick | None = None,
                         track=None) -> DatasetPrepared:  # noqa: ANN001 (a Reporter.track-like callable)
    """Write the capture folder for one timestep of one dataset subject (see the module docstring)."""
    pick = pick or DatasetPick()
    ds = open_dataset(spec, res)
    out = Path(out)
    if out.resolve() == ds.root.resolve() or out.resolve() in ds.root.resolve().parents:
        raise BadInput("--out would replace the dataset folder; choose another output folder", out)
    subject = _subject(ds, pick.subject)
    if ds.kind == "video":
        return _prepare_clip(ds, subject, out, pick)
    t = _timestep(ds, subject, pick.frame, pick.sequence)
    cams = ds.cameras(subject, t)
    idx = _views(ds, subject, cams, pick)
    loaded = [ds.load(subject, t, i) for i in (track(idx, "reading views", total=len(idx)) if track else idx)]
    rgb = np.stack([x[0] for x in loaded])
    masks = np.stack([x[1] for x in loaded])
    code = ds.codes(subject, t)
    space = ds.expression_space[0] if code is not None else None
    names = [ds.camera_names(subject)[i] for i in idx]
    meta: dict = {"prepare": {"source_format": ds.kind, "dataset": str(ds.root), "subject": subject,
                              "timestep": int(t), "description": ds.describe(subject, t), "cameras": names,
                              "dataset_options": ds.options}}
    norm = ds.normalisation(subject)
    if norm is not None:
        meta["normalisation"] = norm.to_json()
    if not ds.has_masks(subject) and bool((masks > 0.999).all()):
        masks = None  # no masks and no padding: plain RGB says "no mask" to read_capture
    note = world_note(ds, code is not None)
    meta["prepare"]["world"] = "rig" if note else "head"
    write_capture(out, rgb, masks, cams[idx], None if code is None else np.repeat(code[None], len(idx), 0),
                  space, meta)
    return DatasetPrepared(out, subject, t, ds.describe(subject, t), names, space, [note] if note else [])


def _prepare_clip(ds, subject: str, out: Path, pick: DatasetPick) -> DatasetPrepared:  # noqa: ANN001
    """A clip of a `video:DIR` dataset: the self-reenactment inputs (`pick.views` frames spread over head
    rotation in the first part of the clip; `--frame` is not used), each with its own camera and code."""
    if pick.frame is not None or pick.cameras or pick.sequence is not None:
        raise BadInput("for a video:DIR clip, prepare takes the clip's reenactment inputs; --frame, --cameras "
                       "and --sequence do not apply (use --subject and --views)")
    if not 1 <= pick.views <= MAX_VIEWS:
        raise BadInput(f"--views must be between 1 and {MAX_VIEWS}, got {pick.views}")
    ts, _ = ds.reenactment(subject, pick.views, 1)
    loaded = [ds.load(subject, t, 0) for t in ts]
    cams = Cameras.cat([ds.cameras(subject, t) for t in ts])
    codes = np.stack([ds.codes(subject, t) for t in ts])
    names = [ds.describe(subject, t) for t in ts]
    meta = {"prepare": {"source_format": "video", "dataset": str(ds.root), "subject": subject,
                        "timesteps": [int(t) for t in ts], "description": ", ".join(names),
                        "dataset_options": ds.options}}
    write_capture(out, np.stack([x[0] for x in loaded]), np.stack([x[1] for x in loaded]), cams, codes,
                  ds.expression_space[0], meta)
    return DatasetPrepared(out, subject, int(ts[0]), meta["prepare"]["description"], names, ds.expression_space[0])
