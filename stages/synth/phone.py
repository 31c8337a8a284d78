"""A phone-style capture of a synthetic head: what a user's own photos look like, but redistributable.

Portrait photos from a handheld phone (vertical field of view PHONE_VFOV_DEG, 0.3-0.6 m from the face, the head
turned left, right, up and down, a little roll and off-centre framing) over a cluttered indoor background,
saved as plain JPEGs with no cameras and no masks: exactly what `avat3r prepare PHOTOS --out CAP` must handle
with no flags. `python -m stages.synth.phone --out examples/phone` writes the shipped example; `truth.json`
beside the photos would be read as nothing by `prepare`, so the known cameras stay in `PHONE_VIEWS` instead.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from stages.cameras import Cameras, look_at, spherical_eye
from stages.io import atomic_dir, to_uint8
from stages.synth.capture import distinct_expressions
from stages.synth.identity import sample_identity
from stages.synth.render import render_head

PHONE_VFOV_DEG = 70.0
SIZE = (384, 512)  # width, height: portrait
# (yaw, pitch, distance m, roll deg): a frontal photo, the head turned about +-40 degrees, one from below.
PHONE_VIEWS = ((0.0, 4.0, 0.42, 1.5), (38.0, 2.0, 0.50, -2.0), (-42.0, 6.0, 0.36, 2.5), (15.0, -18.0, 0.55, -1.0))


def phone_cameras(views: tuple = PHONE_VIEWS, size: tuple[int, int] = SIZE, vfov: float = PHONE_VFOV_DEG,
                  seed: int = 0) -> Cameras:
    """Handheld cameras looking roughly at the face (a few cm of aim error), rolled slightly."""
    rng = np.random.default_rng(seed)
    w, h = size
    f = (h / 2) / math.tan(math.radians(vfov) / 2)
    c2ws = []
    for yaw, pitch, dist, roll in views:
        eye = spherical_eye(torch.tensor(yaw), torch.tensor(pitch), dist) + torch.tensor([0.0, 0.02, 0.0])
        target = torch.tensor([*(rng.normal(0, 0.015, 2)), 0.02], dtype=torch.float32)
        c2w = look_at(eye[None], target[None])[0]
        r = math.radians(roll)
        rz = torch.tensor([[math.cos(r), -math.sin(r), 0, 0], [math.sin(r), math.cos(r), 0, 0], [0, 0, 1, 0],
                           [0, 0, 0, 1]], dtype=torch.float32)
        c2ws.append(c2w @ rz)
    n = len(views)
    return Cameras(torch.stack(c2ws), torch.full((n,), f), torch.full((n,), f), torch.full((n,), w / 2.0),
                   torch.full((n,), h / 2.0), w, h)


def room_background(size: tuple[int, int], seed: int) -> np.ndarray:
    """A cluttered, non-white indoor scene (float RGB): a warm wall gradient, shelves, frames and a lamp."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([0.62 - 0.15 * yy, 0.52 - 0.1 * yy + 0.05 * xx, 0.42 - 0.05 * xx], -1)
    for _ in range(14):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        bw, bh = rng.integers(w // 12, w // 3), rng.integers(h // 16, h // 4)
        img[y0:y0 + bh, x0:x0 + bw] = rng.uniform(0.1, 0.9, 3)
    img += rng.normal(0, 0.015, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def write_phone_capture(out: str | Path, seed: int = 11, quality: int = 88) -> list[Path]:
    """Render the phone photos of one synthetic person and write them as IMG_000N.jpg (no EXIF, no cameras)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    identity = sample_identity(rng)
    cams = phone_cameras(seed=seed)
    exprs = distinct_expressions(rng, len(cams), neutral_first=True) * 0.5  # everyday, mild expressions
    paths = []
    with atomic_dir(out) as tmp:
        for i in range(len(cams)):
            r = render_head(identity, exprs[i], cams[i], depth=False)
            rgb, a = r["rgb"][0].numpy(), r["alpha"][0].numpy()[..., None]
            bg = room_background(SIZE, seed * 100 + i)
            photo = to_uint8(rgb * a + bg * (1 - a))
            name = f"IMG_{i + 1:04d}.jpg"
            iio.imwrite(tmp / name, photo, quality=quality)
            paths.append(Path(out) / name)
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("examples/phone"))
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    for p in write_phone_capture(args.out, args.seed):
        print(p)


if __name__ == "__main__":
    main()
