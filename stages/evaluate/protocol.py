"""Which views an evaluation shows the model and which it scores, following the paper: per held-out subject,
4 input views chosen by k-farthest viewpoint sampling, each at a timestep other than the targets', then the
remaining cameras at the target timesteps (expressions the inputs never showed).

Two sources give the same `Episode`: a multi-view dataset (`stages.datasets`: SPEC section 7, Ava256, NeRSemble)
and the synthetic capture folders of the seed mode (`make_synthetic_capture`: 4 inputs + 8 target views)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.cameras import Cameras
from stages.errors import BadInput
from stages.landmark_masks import hull_mask


@dataclass
class Views:
    """Images of one subject with their cameras and (for targets) expression codes."""

    images: Tensor  # (V, H, W, 3) straight colour in [0, 1]
    masks: Tensor  # (V, H, W) in [0, 1]
    cameras: Cameras
    codes: Tensor | None = None  # (V, D)
    labels: list[str] | None = None  # e.g. "t=3 cam=07", for reports

    def __len__(self) -> int:
        return self.images.shape[0]

    def composited(self) -> Tensor:
        """Colour on black, as the model's renders are scored."""
        return self.images * self.masks[..., None]


@dataclass
class Episode:
    """One subject's evaluation: inputs, targets and what is known about the subject."""

    subject: str
    inputs: Views
    targets: Views
    identity: object | None = None  # a synthetic HeadIdentity: ground-truth 3D keypoints and depth
    input_codes: Tensor | None = None  # the inputs' own expressions (needed only for a ground-truth prior)
    target_face_masks: Tensor | None = None  # (N, H, W) face hulls of the targets (video data): face PSNR
    target_expr_masks: Tensor | None = None  # (N, H, W) mouth and eyes of the targets (video data): expression


@dataclass(frozen=True)
class Selection:
    """(timestep, camera index) pairs of the inputs and of the targets."""

    inputs: list[tuple[int, int]]
    targets: list[tuple[int, int]]


def select_views(timesteps: list[int], directions: Tensor, generator: torch.Generator, n_inputs: int = 4,
                 target_timesteps: int = 1, targets_per_timestep: int = 8) -> Selection:
    """k-farthest input cameras at timesteps other than the targets'; targets: other cameras at target timesteps.

    With a single timestep the inputs share it (there is no other); the report says so via the selection."""
    from stages.synth.studio import farthest_views

    n_cams = directions.shape[0]
    if n_cams <= n_inputs:
        raise BadInput(f"{n_cams} cameras: need more than the {n_inputs} inputs to leave views to score")
    views = farthest_views(directions, n_inputs, generator)
    order = torch.randperm(len(timesteps), generator=generator).tolist()
    n_t = max(1, min(target_timesteps, len(timesteps) - 1)) if len(timesteps) > 1 else 1
    t_targets = sorted(timesteps[i] for i in order[:n_t])
    others = [timesteps[i] for i in order[n_t:]] or list(t_targets)
    t_inputs = [others[i % len(others)] for i in range(n_inputs)]
    rest = [c for c in range(n_cams) if c not in views]
    targets = []
    for t in t_targets:
        pick = torch.randperm(len(rest), generator=generator)[:targets_per_timestep].tolist()
        targets += [(t, rest[i]) for i in sorted(pick)]
    return Selection(list(zip(t_inputs, views, strict=True)), targets)


def _stack(dataset, subject: str, pairs: list[tuple[int, int]], with_codes: bool) -> Views:
    rgbs, masks, cams, codes = [], [], [], []
    for t, c in pairs:
        rgb, mask = dataset.load(subject, t, c)
        rgbs.append(torch.from_numpy(np.ascontiguousarray(rgb, np.float32)))
        masks.append(torch.from_numpy(np.ascontiguousarray(mask, np.float32)))
        cams.append(dataset.cameras(subject, t)[c])
        if with_codes:
            code = dataset.codes(subject, t)
            if code is None:
                raise BadInput(f"subject {subject} has no expression code at timestep {t}; evaluation drives the "
                               "avatar with the target's code", dataset.root)
            codes.append(torch.from_numpy(np.asarray(code, np.float32)))
    names = dataset.camera_names(subject)
    return Views(torch.stack(rgbs), torch.stack(masks), Cameras.cat(cams),
                 torch.stack(codes) if with_codes else None, [f"t={t} cam={names[c]}" for t, c in pairs])


def dataset_episode(dataset, subject: str, generator: torch.Generator, n_inputs: int = 4,
                    target_timesteps: int = 1, targets_per_timestep: int = 8) -> Episode:
    """Build one subject's episode from a `stages.datasets.HeadDataset`."""
    ts = dataset.timesteps(subject)
    if not ts:
        raise BadInput(f"subject {subject} has no timesteps", dataset.root)
    directions = dataset.cameras(subject, ts[0]).forward_dirs()
    sel = select_views(ts, directions, generator, n_inputs, target_timesteps, targets_per_timestep)
    inputs = _stack(dataset, subject, sel.inputs, with_codes=False)
    input_codes = None
    codes = [dataset.codes(subject, t) for t, _ in sel.inputs]
    if all(c is not None for c in codes):
        input_codes = torch.from_numpy(np.stack(codes).astype(np.float32))
    return Episode(subject, inputs, _stack(dataset, subject, sel.targets, with_codes=True),
                   synthetic_identity(dataset, subject), input_codes)


def synthetic_identity(dataset, subject: str):
    """The HeadIdentity a SPEC section 7 synthetic subject was rendered from (stored in its transforms.json), or
    None for other data."""
    if getattr(dataset, "kind", "") != "synth":
        return None
    from stages.io import read_json

    meta = read_json(Path(dataset.root) / subject / "transforms.json")
    return identity_from_dict(meta.get("identity"))


def identity_from_dict(data: dict | None):
    """Rebuild a HeadIdentity from its JSON form (lists back to tuples), or None when absent or stale."""
    if not isinstance(data, dict):
        return None
    from dataclasses import fields

    from stages.synth.identity import HeadIdentity

    names = {f.name for f in fields(HeadIdentity)}
    if set(data) != names:
        return None  # written by another version of the synthetic head model
    return HeadIdentity(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def capture_episode(capture_dir: Path) -> Episode:
    """The seed mode's episode: a synthetic capture folder with `targets/` (see make_synthetic_capture)."""
    from stages.capture import read_capture
    from stages.io import read_json

    inputs = read_capture(capture_dir)
    targets = read_capture(capture_dir / "targets")
    if targets.expressions is None:
        raise BadInput("targets have no per-frame expressions", capture_dir / "targets" / "transforms.json")
    meta = read_json(Path(capture_dir) / "transforms.json").get("synthetic", {})
    labels = [f"target {i}" for i in range(len(targets))]
    return Episode(Path(capture_dir).name,
                   Views(inputs.images, inputs.masks, inputs.cameras, None, [f"input {i}" for i in range(len(inputs))]),
                   Views(targets.images, targets.masks, targets.cameras, targets.expressions, labels),
                   identity_from_dict(meta.get("identity")), inputs.expressions)


def face_hull(landmarks: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(size, size) — or (height, width) for a pair — float32 mask of the convex hull of face landmarks
    (pixel-corner coordinates)."""
    return hull_mask(landmarks, (size, size) if isinstance(size, int) else tuple(size)).astype(np.float32)


def video_episode(dataset, subject: str, n_inputs: int = 4, n_targets: int = 8) -> Episode:
    """The self-reenactment episode of one clip of a `video:DIR` dataset: inputs spread over head rotation
    among the first part of the clip, targets evenly over the rest, each with its own camera, code, face hull
    and mouth-and-eyes region (see `VideoDataset.reenactment`)."""
    t_in, t_out = dataset.reenactment(subject, n_inputs, n_targets)
    inputs = _stack(dataset, subject, [(t, 0) for t in t_in], with_codes=False)
    targets = _stack(dataset, subject, [(t, 0) for t in t_out], with_codes=True)
    inputs.labels = [dataset.describe(subject, t) for t in t_in]
    targets.labels = [dataset.describe(subject, t) for t in t_out]
    faces = torch.from_numpy(np.stack([face_hull(dataset.landmarks(subject, t), dataset.size) for t in t_out]))
    codes = torch.from_numpy(np.stack([dataset.codes(subject, t) for t in t_in]).astype(np.float32))
    from stages.train.video_data import expression_regions

    regions = torch.from_numpy(np.stack([expression_regions(dataset.landmarks(subject, t), dataset.size)
                                         for t in t_out]))
    return Episode(subject, inputs, targets, None, codes, faces, regions)
