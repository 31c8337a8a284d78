"""Training examples from monocular clips (`video:DIR`) and from several datasets mixed by weight.

A video example: one clip; 4 input frames at different times, chosen for viewpoint spread (farthest-point
sampling on head rotation among a random subset of the clip's frames, so the choice varies between examples;
with `--narrow-video-inputs F`, a fraction F of the sets are instead one frame and the 3 nearest it in rotation);
with `--mirror-video F`, a fraction F of the examples are seen in a mirror (`mirrored`: every image flipped left to
right, every camera mirrored across the face's midplane, Left/Right ARKit channels swapped), since a mirrored
face is close to a new person and the corpus has few people; with `--video-colour F`, a fraction F get one colour
response (exposure, white balance, gamma, drawn as the wide recipe's global transform) on inputs and targets
alike (`recoloured`), the same person filmed by another camera in another light;
`n_supervision` other frames as targets, each with its OWN camera and ARKit code (`target_codes`, the network
decodes each target's expression from one identity pass). Losses are computed as for studio data, against the
target composited with its person mask over a random background (so only the person is learned).

With `configs > 0` (training sets it from `--pool-configs`, as the synthetic pool does) each clip has that many
fixed input sets; an example names its set in `prior_key` and `collate` computes the set's positional prior once
and memoises it. Without this the built-in prior is recomputed for every video example, which made a mixed
real + synthetic step 3.5x slower on an H100 (0.30 s vs 0.085 s). Supervision frames are still drawn afresh.

Head-pose cameras are noisy (the landmarker's pose jitters by a pixel or two and the focal is nominal).
Video examples are flagged `shift_tolerant`: their colour L1 is the minimum over integer shifts of the target
by up to `SHIFT_RADIUS` pixels (`shift_tolerant_l1`), so a render that is right up to a pixel of misregistration
is not pushed to blur towards the average of the misaligned frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.errors import BadInput

SHIFT_RADIUS = 1  # pixels of camera misregistration the video loss forgives
MIRROR_FACEMESH = "--mirror-video does not apply with --video-prior facemesh (its landmarks are not mirrored)"
CANDIDATES = 24  # frames of a clip among which the inputs are spread
# MediaPipe face-mesh indices: the outer lip contour and the two eye contours
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
EYES = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))


def parse_mix(specs: list[str]) -> list[tuple[str, float]]:
    """`--data` values with optional `@WEIGHT` suffixes -> (spec, weight) pairs (weights default to 1 and are
    relative). A suffix that is not a positive number is part of the path."""
    out = []
    for spec in map(str, specs):
        head, at, tail = spec.rpartition("@")
        try:
            weight = float(tail) if at else None
        except ValueError:
            weight = None
        if weight is None:
            out.append((spec, 1.0))
            continue
        if not 0 < weight < float("inf"):
            raise BadInput(f"--data {spec!r}: the weight after '@' must be a positive number")
        out.append((head, weight))
    return out


def shift_tolerant_l1(pred: Tensor, target: Tensor, radius: int = SHIFT_RADIUS) -> Tensor:
    """Per image (N, C, H, W): the smallest mean |pred - target shifted by (dy, dx)| over integer shifts with
    |dy|, |dx| <= radius, compared on the interior both shifts see. Returns (N,)."""
    if radius <= 0:
        return (pred - target).abs().flatten(1).mean(1)
    r = radius
    core = pred[..., r:-r, r:-r]
    H, W = pred.shape[-2:]
    errs = [(core - target[..., r + dy:H - r + dy, r + dx:W - r + dx]).abs().flatten(1).mean(1)
            for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    return torch.stack(errs, 1).amin(1)


def expression_regions(landmarks: np.ndarray, size: int, mouth_margin: float = 0.3, eye_margin: float = 0.25
                       ) -> np.ndarray:
    """(size, size) float32 mask of where a face's expression shows: the mouth and the eyes, each the convex
    hull of its landmarks widened by a margin of `mouth_margin` / `eye_margin` times its own width (so a jaw
    that opens past closed lips stays inside). Video frames have no neutral render to diff against, so this
    stands in for the synthetic pool's changed-pixel mask in the expression-region loss
    (`train --video-expr-regions`)."""
    import cv2

    from stages.landmark_masks import hull_mask

    pts = np.asarray(landmarks, np.float64)[:, :2]
    out = np.zeros((size, size), np.uint8)
    for ids, margin in ((LIPS, mouth_margin), (EYES[0], eye_margin), (EYES[1], eye_margin)):
        p = pts[list(ids)]
        part = hull_mask(p, (size, size))
        r = int(round(margin * float(np.ptp(p[:, 0]))))
        if r > 0:
            part = cv2.dilate(part, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        out |= part
    return out.astype(np.float32)


class VideoSource:
    """Examples from a `video:DIR` dataset; example i of step s is a pure function of (seed, s, rank, i)."""

    def __init__(self, data, size: int, n_inputs: int, n_supervision: int, seed: int, split: str = "train",
                 configs: int = 0, expr_regions: bool = False, prior: str = "builtin",
                 input_view_targets: int = 0, narrow_share: float = 0.0, mirror_share: float = 0.0,
                 colour_share: float = 0.0, frame_only: bool = False):
        from stages.datasets import open_dataset
        from stages.datasets.video import VideoDataset

        self.dataset = data if isinstance(data, VideoDataset) else open_dataset(data, size)
        if not isinstance(self.dataset, VideoDataset):
            raise BadInput("not a video:DIR dataset", getattr(self.dataset, "root", None))
        self.size, self.seed, self.n_inputs, self.n_supervision = size, seed, n_inputs, n_supervision
        self.configs, self.expr_regions, self.input_view_targets = configs, expr_regions, input_view_targets
        self.narrow_share, self.mirror_share, self.colour_share = narrow_share, mirror_share, colour_share
        self.face = None  # the canonical face, when video examples get the face-mesh prior
        if prior == "facemesh" and mirror_share > 0:
            raise BadInput(MIRROR_FACEMESH)
        if prior == "facemesh":
            self.face = self.dataset.canonical_face()
            if self.face is None:
                raise BadInput("--video-prior facemesh needs the cache's landmarks: run python -m "
                               "stages.datasets.face_landmarks on it first", self.dataset.cache)
        self.names = self.dataset.subjects(split) or (self.dataset.subjects("all") if split == "train" else [])
        if not self.names:
            raise BadInput(f"no usable clips in split '{split}' (see {self.dataset.cache / 'index.json'})",
                           self.dataset.root)
        self.frame_only = frame_only
        old = [n for n in self.names if not self.dataset.has_frame_coverage(n)] if frame_only else []
        if old:
            raise BadInput(f"--video-frame-only needs the cache's frame-coverage maps, which clip {old[0]} lacks "
                           "(tracked before they were stored): re-track the cache", self.dataset.folder(old[0]))

    def frames(self, name: str, g: torch.Generator, config: int | None = None) -> tuple[list[int], list[int]]:
        """(input timesteps, supervision timesteps) for one example of clip `name`; with `config`, the inputs
        are that fixed set of the clip (a pure function of seed, clip and config)."""
        from stages.datasets.video import farthest_rotations, nearest_rotations
        from stages.train.data import stable_seed, with_input_views

        ts = self.dataset.timesteps(name)
        gi = g if config is None else torch.Generator().manual_seed(
            stable_seed(self.seed, self.names.index(name), config, 0, 23))
        perm = torch.randperm(len(ts), generator=gi).tolist()
        cand = sorted(perm[:CANDIDATES])
        rots = self.dataset.rotations(name)[cand]
        first = int(torch.randint(0, len(cand), (1,), generator=gi))
        narrow = self.narrow_share > 0 and float(torch.rand(1, generator=gi)) < self.narrow_share
        picks = nearest_rotations(rots, self.n_inputs, first) if narrow else \
            farthest_rotations(rots, self.n_inputs, first)
        inputs = [cand[i] for i in picks]
        rest = [t for t in ts if t not in inputs] or list(ts)
        order = torch.randperm(len(rest), generator=g).tolist()
        targets = [rest[order[i % len(rest)]] for i in range(self.n_supervision)]
        return inputs, with_input_views(targets, inputs, self.input_view_targets, g)

    def _load(self, name: str, t: int) -> tuple[Tensor, Tensor]:
        rgb, mask = self.dataset.load(name, t, 0)
        return torch.from_numpy(rgb), torch.from_numpy(mask)

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        from stages.cameras import Cameras
        from stages.train.data import stable_seed

        g = torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index, 16))
        name = self.names[int(torch.randint(0, len(self.names), (1,), generator=g))]
        config = int(torch.randint(0, self.configs, (1,), generator=g)) if self.configs > 0 else None
        inputs, targets = self.frames(name, g, config)
        ins = [self._load(name, t) for t in inputs]
        tgs = [self._load(name, t) for t in targets]
        codes = torch.from_numpy(np.stack([self.dataset.codes(name, t) for t in targets]))
        example = {
            "input_rgb": torch.stack([x[0] for x in ins]).to(device),
            "input_alpha": torch.stack([x[1] for x in ins]).to(device),
            "input_cameras": Cameras.cat([self.dataset.cameras(name, t) for t in inputs]).to(device),
            "input_expr": torch.from_numpy(np.stack([self.dataset.codes(name, t) for t in inputs])).to(device),
            "target_rgb": torch.stack([x[0] for x in tgs]).to(device),
            "target_alpha": torch.stack([x[1] for x in tgs]).to(device),
            "target_cameras": Cameras.cat([self.dataset.cameras(name, t) for t in targets]).to(device),
            "target_expr": codes[0].to(device), "target_codes": codes.to(device), "shift_tolerant": True,
            **({"prior_key": f"video:{name}:{config}"} if config is not None else {}),
            **({"input_face_landmarks": [self.dataset.face_landmarks(name, t) for t in inputs],
                "canonical_face": self.face} if self.face is not None else {}),
            **({"target_expr_mask": torch.from_numpy(np.stack([
                expression_regions(self.dataset.landmarks(name, t), self.size) for t in targets])).to(device)}
               if self.expr_regions else {}),
            **({"target_valid": torch.from_numpy(np.stack([
                self.dataset.frame_coverage(name, t) for t in targets])).to(device)} if self.frame_only else {}),
        }
        # their own generators, so that the rest of an example is the same whether or not these are on
        if self.mirror_share > 0 and float(torch.rand(1, generator=torch.Generator().manual_seed(
                stable_seed(self.seed, step, rank, index, 29)))) < self.mirror_share:
            example = mirrored(example)
        if self.colour_share > 0:
            g_colour = torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index, 37))
            if float(torch.rand(1, generator=g_colour)) < self.colour_share:
                example = recoloured(example, g_colour)
        return example


def mirrored(example: dict) -> dict:
    """A video example seen in a mirror: images, masks and expression-region masks flipped left to right,
    cameras mirrored across the world's x = 0 plane (the canonical face's midplane; `Cameras.mirrored`), ARKit
    codes with Left and Right swapped, and a prior key of its own (the mirrored input set has its own prior)."""
    from stages.expressions import mirror_arkit

    out = dict(example)
    for key in ("input_rgb", "input_alpha", "target_rgb", "target_alpha", "target_expr_mask", "target_valid"):
        if key in out:
            out[key] = out[key].flip(2)  # (V, H, W[, C]): W is dim 2
    for key in ("input_cameras", "target_cameras"):
        out[key] = out[key].mirrored()
    for key in ("input_expr", "target_expr", "target_codes"):
        out[key] = torch.from_numpy(np.ascontiguousarray(mirror_arkit(out[key].cpu().numpy()))).to(out[key])
    if "prior_key" in out:
        out["prior_key"] = f"{out['prior_key']}:mirrored"
    return out


def recoloured(example: dict, generator: torch.Generator) -> dict:
    """A video example with one colour response (`stages.train.photometric.sample_colour`: exposure, white
    balance, gamma) applied to its inputs and its targets alike, so the model learns to keep the input colours
    rather than a clip's look. With fixed input sets (`configs`) the memoised positional prior of the original set
    serves (the key is kept; a prior per drawn colour would be one per example): where both confirm a pixel the
    two priors agree to about a millimetre, though which pixels pass the confidence threshold changes."""
    from stages.train.photometric import apply_colour, sample_colour

    colour = sample_colour(generator)
    out = dict(example)
    for key in ("input_rgb", "target_rgb"):
        out[key] = apply_colour(out[key], colour).to(out[key].dtype)
    return out


class MixedSource:
    """Several sources drawn by weight: example i of step s comes from the source a generator seeded with
    (seed, s, rank, i) picks, so the mix is deterministic and resumable."""

    def __init__(self, sources: list, weights: list[float], seed: int):
        if len(sources) != len(weights) or not sources:
            raise ValueError("one weight per source")
        w = np.asarray(weights, np.float64)
        self.sources, self.cum, self.seed = sources, np.cumsum(w / w.sum()), seed

    def pick(self, step: int, rank: int, index: int) -> int:
        from stages.train.data import stable_seed

        u = torch.rand(1, generator=torch.Generator().manual_seed(stable_seed(self.seed, step, rank, index, 77))).item()
        return int(min(np.searchsorted(self.cum, u, side="right"), len(self.sources) - 1))

    def example(self, step: int, rank: int, index: int, device: torch.device) -> dict:
        return self.sources[self.pick(step, rank, index)].example(step, rank, index, device)


def is_video(spec: str | Path) -> bool:
    return str(spec).startswith("video:")
